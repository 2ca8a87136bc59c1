-- Every schema object of the mapped tables and of their schemas but the columns (mapped_columns.sql
-- reads those), one row each: (kind, schema, table, object name, detail, key, table oid), kind being a
-- `schema_objects::ObjectKind` label. Names are bare: the caller quotes them and builds the qualified
-- name (schema.object, or schema.table.object for constraints and triggers). `key` is a primary key's
-- column numbers, which the caller names from the columns read (joining pg_attribute here for each key
-- costs a third of this read at 10^4 tables), except on a partition, whose columns that read leaves out.
-- Partitions are left out where the partitioned root carries the object (columns, constraints cloned from
-- the root, triggers and indexes created on the root). Extension-owned objects are left out: CREATE
-- EXTENSION makes them on each side. Unordered: the caller sorts.
, schemas AS (SELECT DISTINCT schema_oid, schema_name FROM mapped)
, extension_owned AS (
    SELECT objid, classid FROM pg_catalog.pg_depend WHERE deptype = 'e'
)
SELECT 'schema' AS kind, s.schema_name::text AS schema_name, NULL::text AS table_name,
       NULL::text AS object_name, '' AS detail, NULL::int2[] AS key, NULL::oid AS table_oid
FROM schemas s
UNION ALL
SELECT 'extension', NULL, NULL, e.extname::text, '', NULL, NULL
FROM pg_catalog.pg_extension e
WHERE e.extname <> 'plpgsql'
UNION ALL
SELECT 'table', m.schema_name, m.table_name, NULL, CASE m.relkind WHEN 'p' THEN 'partitioned' ELSE '' END, NULL,
       m.oid
FROM mapped m
UNION ALL
SELECT CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key'
                        WHEN 'u' THEN 'unique constraint' WHEN 'x' THEN 'exclusion constraint'
                        ELSE 'check constraint' END,
       m.schema_name, m.table_name, con.conname::text,
       CASE WHEN con.contype <> 'p' THEN pg_catalog.pg_get_constraintdef(con.oid)
            WHEN m.relispartition
            THEN (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                  FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = m.oid AND a.attnum = k.attnum)
            ELSE '' END,
       CASE WHEN con.contype = 'p' AND NOT m.relispartition THEN con.conkey END,
       m.oid
FROM mapped m
JOIN pg_catalog.pg_constraint con ON con.conrelid = m.oid
WHERE con.contype IN ('p', 'f', 'u', 'c', 'x') AND con.conparentid = 0 AND con.conislocal
UNION ALL
SELECT 'trigger', m.schema_name, m.table_name, tg.tgname::text, '', NULL, m.oid
FROM mapped m
JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = m.oid
WHERE NOT tg.tgisinternal AND NOT m.relispartition
UNION ALL
SELECT 'index', m.schema_name, m.table_name, ic.relname::text, CASE WHEN i.indisunique THEN 'unique' ELSE '' END, NULL,
       m.oid
FROM mapped m
JOIN pg_catalog.pg_index i ON i.indrelid = m.oid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE NOT m.relispartition
  -- A hashed set of the constraint indexes, not a probe per index.
  AND i.indexrelid NOT IN (SELECT con.conindid FROM pg_catalog.pg_constraint con
                           WHERE con.contype IN ('p', 'u', 'x'))
UNION ALL
-- A sequence's type is one of smallint, integer, bigint: its oid is enough for the caller.
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'materialized view' END,
       s.schema_name, NULL, c.relname::text,
       CASE WHEN c.relkind = 'S' THEN seq.seqtypid::int::text ELSE '' END,
       NULL, NULL
FROM schemas s
JOIN pg_catalog.pg_class c ON c.relnamespace = s.schema_oid AND c.relkind IN ('S', 'v', 'm')
LEFT JOIN pg_catalog.pg_sequence seq ON seq.seqrelid = c.oid
WHERE NOT EXISTS (SELECT 1 FROM extension_owned x
                  WHERE x.classid = 'pg_catalog.pg_class'::regclass AND x.objid = c.oid)
UNION ALL
-- detail carries the identity arguments, which belong to the name: s.f(integer).
SELECT 'function', s.schema_name, NULL, p.proname::text, pg_catalog.pg_get_function_identity_arguments(p.oid), NULL, NULL
FROM schemas s
JOIN pg_catalog.pg_proc p ON p.pronamespace = s.schema_oid
WHERE NOT EXISTS (SELECT 1 FROM extension_owned x
                  WHERE x.classid = 'pg_catalog.pg_proc'::regclass AND x.objid = p.oid)
UNION ALL
SELECT 'type', s.schema_name, NULL, t.typname::text,
       CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'r' THEN 'range' ELSE 'composite' END,
       NULL, NULL
FROM schemas s
JOIN pg_catalog.pg_type t ON t.typnamespace = s.schema_oid
-- Composite types of their own (CREATE TYPE ... AS), not the row type of every table: a hashed set of
-- the few relkind 'c' relations rather than a join over all of pg_class.
WHERE (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND t.typrelid IN (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind = 'c')))
  AND NOT EXISTS (SELECT 1 FROM extension_owned x
                  WHERE x.classid = 'pg_catalog.pg_type'::regclass AND x.objid = t.oid)
