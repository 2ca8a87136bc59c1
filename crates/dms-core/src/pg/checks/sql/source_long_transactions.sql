-- Sessions whose transaction has been open longer than $1 seconds and holds an xid or a snapshot: slot
-- creation waits for them, and while they run the slot's catalog_xmin and vacuum are held back.
SELECT a.pid,
       coalesce(a.usename::text, '?') AS user_name,
       coalesce(a.datname::text, '?') AS database,
       coalesce(a.state, '?') AS state,
       extract(epoch FROM now() - a.xact_start)::bigint AS age_seconds
FROM pg_catalog.pg_stat_activity a
WHERE a.pid <> pg_backend_pid()
  AND a.xact_start < now() - make_interval(secs => $1::float8)
  AND (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL)
ORDER BY a.xact_start
