-- Every schema object of the mapped tables and of their schemas but the columns (mapped_columns.sql
-- reads those), one row each, classified by
-- `schema_objects::ObjectKind` labels: (kind, qualified name, owning table, detail to compare,
-- insert_requires_value). Partitions are left out where the partitioned root carries the object
-- (columns, constraints cloned from the root, triggers and indexes created on the root).
-- Extension-owned objects are left out: CREATE EXTENSION makes them on each side. Unordered: the
-- caller sorts (sorting 10^5 rows in the server costs more than in Rust).
, schemas AS (SELECT DISTINCT schema_oid, schema_name FROM mapped)
-- Each primary key's columns in key order, joined set-wise: a subquery per key costs a third of this read
-- at 10^4 tables.
, pk_columns AS (
    SELECT con.oid AS conoid, string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord) AS columns
    FROM mapped m
    JOIN pg_catalog.pg_constraint con ON con.conrelid = m.oid AND con.contype = 'p'
    CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = m.oid AND a.attnum = k.attnum
    GROUP BY con.oid
)
, extension_owned AS (
    SELECT objid, classid FROM pg_catalog.pg_depend WHERE deptype = 'e'
)
SELECT 'schema' AS kind, quote_ident(s.schema_name) AS name, NULL::text AS owning_table,
       '' AS detail, false AS insert_requires_value
FROM schemas s
UNION ALL
SELECT 'extension', quote_ident(e.extname), NULL, '', false
FROM pg_catalog.pg_extension e
WHERE e.extname <> 'plpgsql'
UNION ALL
SELECT 'table', m.qualified, NULL, CASE m.relkind WHEN 'p' THEN 'partitioned' ELSE '' END, false
FROM mapped m
UNION ALL
SELECT CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key'
                        WHEN 'u' THEN 'unique constraint' WHEN 'x' THEN 'exclusion constraint'
                        ELSE 'check constraint' END,
       CASE WHEN con.contype = 'p' THEN m.qualified
            ELSE format('%I.%I.%I', m.schema_name, m.table_name, con.conname) END,
       m.qualified,
       CASE WHEN con.contype = 'p'
            THEN pk.columns
            ELSE pg_catalog.pg_get_constraintdef(con.oid) END,
       false
FROM mapped m
JOIN pg_catalog.pg_constraint con ON con.conrelid = m.oid
LEFT JOIN pk_columns pk ON pk.conoid = con.oid
WHERE con.contype IN ('p', 'f', 'u', 'c', 'x') AND con.conparentid = 0 AND con.conislocal
UNION ALL
SELECT 'trigger', format('%I.%I.%I', m.schema_name, m.table_name, tg.tgname), m.qualified, '', false
FROM mapped m
JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = m.oid
WHERE NOT tg.tgisinternal AND NOT m.relispartition
UNION ALL
SELECT 'index', format('%I.%I', m.schema_name, ic.relname), m.qualified,
       CASE WHEN i.indisunique THEN 'unique' ELSE '' END, false
FROM mapped m
JOIN pg_catalog.pg_index i ON i.indrelid = m.oid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE NOT m.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con
                  WHERE con.conrelid = i.indrelid AND con.conindid = i.indexrelid
                    AND con.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'materialized view' END,
       format('%I.%I', s.schema_name, c.relname), NULL,
       CASE WHEN c.relkind = 'S'
            THEN (SELECT pg_catalog.format_type(seq.seqtypid, NULL)
                  FROM pg_catalog.pg_sequence seq WHERE seq.seqrelid = c.oid)
            ELSE '' END,
       false
FROM schemas s
JOIN pg_catalog.pg_class c ON c.relnamespace = s.schema_oid AND c.relkind IN ('S', 'v', 'm')
WHERE NOT EXISTS (SELECT 1 FROM extension_owned x
                  WHERE x.classid = 'pg_catalog.pg_class'::regclass AND x.objid = c.oid)
UNION ALL
SELECT 'function',
       format('%I.%I(%s)', s.schema_name, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
       NULL, '', false
FROM schemas s
JOIN pg_catalog.pg_proc p ON p.pronamespace = s.schema_oid
WHERE NOT EXISTS (SELECT 1 FROM extension_owned x
                  WHERE x.classid = 'pg_catalog.pg_proc'::regclass AND x.objid = p.oid)
UNION ALL
SELECT 'type', format('%I.%I', s.schema_name, t.typname), NULL,
       CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'r' THEN 'range' ELSE 'composite' END,
       false
FROM schemas s
JOIN pg_catalog.pg_type t ON t.typnamespace = s.schema_oid
LEFT JOIN pg_catalog.pg_class tc ON tc.oid = t.typrelid
WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND tc.relkind = 'c'))
  AND NOT EXISTS (SELECT 1 FROM extension_owned x
                  WHERE x.classid = 'pg_catalog.pg_type'::regclass AND x.objid = t.oid)
