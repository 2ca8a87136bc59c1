-- Inactive replication slots: each keeps WAL from being recycled until it is dropped or consumed again.
SELECT s.slot_name::text,
       s.slot_type,
       coalesce(s.database::text, '') AS database,
       coalesce(pg_catalog.pg_size_pretty(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
                                                                      s.restart_lsn)), '?') AS retained_wal,
       quote_literal(s.slot_name) AS quoted_slot
FROM pg_catalog.pg_replication_slots s
WHERE NOT s.active
ORDER BY s.slot_name
