-- Whether schema $1 exists and the connected role may create a table in it.
SELECT n.oid IS NOT NULL AS schema_exists,
       coalesce(pg_catalog.has_schema_privilege(n.oid, 'CREATE'), false) AS can_create,
       quote_ident($1::text) AS quoted_schema,
       quote_ident(current_user) AS quoted_user
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1::text
