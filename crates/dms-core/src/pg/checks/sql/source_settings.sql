-- One row of server settings and facts about the connected role, for the setting-level source checks.
-- `rds.logical_replication` exists only on RDS and Aurora (NULL elsewhere); `aurora_version()` only on
-- Aurora. rds_replication membership is tested through the role's oid from a row, never a constant
-- name, so a server without that role does not fail the query at plan time.
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_setting('wal_level') AS wal_level,
       current_setting('rds.logical_replication', true) AS rds_logical_replication,
       EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname = 'aurora_version') AS is_aurora,
       (SELECT setting::bigint * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END
          FROM pg_catalog.pg_settings WHERE name = 'wal_sender_timeout') AS wal_sender_timeout_ms,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int AS wal_senders_in_use,
       current_setting('max_replication_slots')::int AS max_replication_slots,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots_in_use,
       current_user::text AS user_name,
       quote_ident(current_user) AS quoted_user,
       r.rolsuper AS is_superuser,
       r.rolreplication AS has_replication_attribute,
       EXISTS (SELECT 1 FROM pg_catalog.pg_roles g
               WHERE g.rolname = 'rds_replication' AND pg_catalog.pg_has_role(g.oid, 'MEMBER'))
           AS in_rds_replication,
       current_database()::text AS database_name
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user
