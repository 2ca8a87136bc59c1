-- The tables the DMS task maps, as a CTE that every table-level read continues: ordinary and
-- partitioned tables in non-system schemas matched by the selection rules ($1/$2 include, $3/$4 exclude:
-- parallel arrays of LIKE patterns for schema and table). A partition is matched by the name of its
-- partition root, as the task's rules name the root. Objects owned by an extension (created by CREATE
-- EXTENSION on each side) and DMS's own awsdms_* control tables are not migrated, so they are left out.
-- Names are returned bare: the caller quotes them (`sql_ident`), cheaper than format('%I') per row.
-- Written for 10^4+ tables: the root is looked up only for partitions (CASE evaluates lazily), and the
-- extension-owned tables come from the few pg_depend rows that reference an extension (a hashed set),
-- not from a probe per table.
WITH mapped AS MATERIALIZED (
    SELECT c.oid,
           n.oid AS schema_oid,
           n.nspname AS schema_name,
           c.relname AS table_name,
           c.relkind,
           c.relpersistence,
           c.relreplident,
           c.relispartition
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL (
        SELECT CASE WHEN c.relispartition
                    THEN (SELECT rn.nspname FROM pg_catalog.pg_class r
                          JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
                          WHERE r.oid = pg_catalog.pg_partition_root(c.oid))
                    ELSE n.nspname END AS schema_name,
               CASE WHEN c.relispartition
                    THEN (SELECT r.relname FROM pg_catalog.pg_class r
                          WHERE r.oid = pg_catalog.pg_partition_root(c.oid))
                    ELSE c.relname END AS table_name
    ) AS root
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname <> ALL (ARRAY['pg_catalog', 'information_schema', 'pg_toast'])
      AND n.nspname !~ '^pg_(toast_)?temp_'
      AND c.relname NOT LIKE 'awsdms\_%'
      AND c.oid NOT IN (SELECT d.objid FROM pg_catalog.pg_depend d
                        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
                          AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e')
      -- Scalar subqueries rather than semi-joins: the planner cannot estimate LIKE against parameter
      -- arrays, and a semi-join's near-zero estimate turns every join on `mapped` into a nested loop.
      -- The usual selection (every table, nothing excluded) short-circuits before the per-table subqueries:
      -- they are 40% of this CTE's cost at 10^4 tables.
      AND ('%' = ALL ($1::text[] || $2::text[])
           OR coalesce((SELECT bool_or(root.schema_name LIKE inc.schema_pattern
                                       AND root.table_name LIKE inc.table_pattern)
                        FROM unnest($1::text[], $2::text[]) AS inc(schema_pattern, table_pattern)), false))
      AND (cardinality($3::text[]) = 0
           OR NOT coalesce((SELECT bool_or(root.schema_name LIKE exc.schema_pattern
                                           AND root.table_name LIKE exc.table_pattern)
                            FROM unnest($3::text[], $4::text[]) AS exc(schema_pattern, table_pattern)), false))
)
