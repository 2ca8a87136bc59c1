-- Mapped target tables holding at least one row, in one statement. pg_relation_size (the file's size,
-- exact even when the cumulative statistics lag or were reset) rules out the never-written tables; only
-- the others run a `LIMIT 1` probe, through query_to_xml (a subquery per candidate on the server, no
-- round trip). Without SELECT on a candidate its size decides. A probe's lock is held until the statement
-- ends, and thousands of them (a target already loaded) can exhaust the shared lock table
-- (max_locks_per_transaction × max_connections): only the first $5 candidates in name order are probed,
-- the size decides for the rest (`probed` says which). Names bare, unordered: the caller quotes and sorts.
SELECT c.schema_name, c.table_name, c.probed
FROM (
    SELECT m.oid, m.schema_name, m.table_name,
           row_number() OVER (ORDER BY m.schema_name COLLATE "C", m.table_name COLLATE "C") <= $5 AS probed
    FROM mapped m
    WHERE m.relkind = 'r'
      AND pg_catalog.pg_relation_size(m.oid) > 0
) AS c
WHERE CASE WHEN NOT c.probed THEN true
           WHEN pg_catalog.has_table_privilege(c.oid, 'SELECT')
           THEN query_to_xml(format('SELECT 1 AS found FROM ONLY %I.%I LIMIT 1', c.schema_name, c.table_name),
                             false, true, '')::text <> ''
           ELSE true END
