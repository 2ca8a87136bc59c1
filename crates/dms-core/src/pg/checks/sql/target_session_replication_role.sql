-- DMS runs the endpoint's after-connect script `SET session_replication_role = replica` on every
-- connection (so triggers and foreign keys do not fire during the load). Try it for real: is_local
-- scopes it to this statement's own implicit transaction, so nothing changes. Needs superuser or, from
-- PostgreSQL 15, `GRANT SET ON PARAMETER session_replication_role`.
SELECT set_config('session_replication_role', 'replica', true)
