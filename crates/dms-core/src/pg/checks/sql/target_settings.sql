SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_user::text AS user_name,
       quote_ident(current_user) AS quoted_user,
       r.rolsuper AS is_superuser
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user
