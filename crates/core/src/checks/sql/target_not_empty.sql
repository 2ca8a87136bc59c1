-- Mapped target tables holding at least one row, in one statement. pg_relation_size (the file's size,
-- exact even when the cumulative statistics lag or were reset) rules out the never-written tables; only
-- the others run a `LIMIT 1` probe, through query_to_xml (a subquery per candidate on the server, no
-- round trip). Without SELECT on a candidate its size decides. Names bare, unordered: the
-- caller quotes and sorts.
SELECT m.schema_name, m.table_name
FROM mapped m
WHERE m.relkind = 'r'
  AND pg_catalog.pg_relation_size(m.oid) > 0
  AND CASE WHEN pg_catalog.has_table_privilege(m.oid, 'SELECT')
           THEN query_to_xml(format('SELECT 1 AS found FROM ONLY %I.%I LIMIT 1', m.schema_name, m.table_name),
                             false, true, '')::text <> ''
           ELSE true END
