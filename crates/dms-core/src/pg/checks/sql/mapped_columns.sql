-- Every column of the mapped tables (partitions are reported through their root), classified for the
-- column checks and compared by target.schema_matches:
--   is_lob: what DMS handles as a LOB (BLOB/NCLOB) from a PostgreSQL source: bytea, text, json, jsonb,
--           xml, hstore, arrays, varchar without a length; a domain counts as its base type.
--   is_unbounded_numeric: numeric without precision (DMS maps it to NUMERIC(28,6) and rounds unless the
--           endpoint maps unbounded numerics as strings).
--   is_identity_always: GENERATED ALWAYS AS IDENTITY, which rejects the explicit values DMS inserts.
-- The table by oid only (the caller names it from the inventory read's table rows), the column's name
-- bare, rows unordered: the caller quotes and sorts (each costs more here than in Rust at 10^4+ tables).
SELECT m.oid AS table_oid,
       a.attname::text AS column_name,
       a.attnum,
       pg_catalog.format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS detail,
       a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' AS insert_requires_value,
       coalesce(base.typname, t.typname) IN ('bytea', 'text', 'json', 'jsonb', 'xml', 'hstore')
           OR coalesce(base.typcategory, t.typcategory) = 'A'
           OR (coalesce(base.typname, t.typname) = 'varchar' AND a.atttypmod = -1) AS is_lob,
       coalesce(base.oid, t.oid) = 'pg_catalog.numeric'::regtype
           AND (CASE WHEN base.oid IS NULL THEN a.atttypmod ELSE t.typtypmod END) = -1 AS is_unbounded_numeric,
       a.attidentity = 'a' AS is_identity_always
FROM mapped m
JOIN pg_catalog.pg_attribute a ON a.attrelid = m.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type base ON base.oid = t.typbasetype
WHERE NOT m.relispartition
