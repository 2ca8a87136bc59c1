-- One row per mapped table with everything the table-level checks need: key and replica identity
-- (source.primary_keys), persistence (source.unlogged_tables), partitioning (source.partitioned_tables),
-- and the connected role's privileges (source.select_privileges, target.privileges). One read of the
-- catalogs serves them all: on 10,000 tables evaluating `mapped` costs more than any single check.
SELECT m.schema_name,
       m.table_name,
       m.relkind::text AS relkind,
       m.relpersistence::text AS relpersistence,
       m.relreplident::text AS relreplident,
       m.relispartition,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = m.oid AND i.indisprimary) AS has_primary_key,
       pg_catalog.has_schema_privilege(m.schema_oid, 'USAGE') AS schema_usage,
       pg_catalog.has_table_privilege(m.oid, 'SELECT') AS can_select,
       pg_catalog.has_table_privilege(m.oid, 'INSERT') AS can_insert,
       pg_catalog.has_table_privilege(m.oid, 'UPDATE') AS can_update,
       pg_catalog.has_table_privilege(m.oid, 'DELETE') AS can_delete,
       CASE WHEN m.relkind = 'p' AND NOT m.relispartition
            THEN (SELECT count(*) FROM pg_catalog.pg_partition_tree(m.oid) pt WHERE pt.isleaf)::int
            ELSE 0 END AS partitions
FROM mapped m

