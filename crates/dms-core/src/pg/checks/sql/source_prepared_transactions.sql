-- Prepared (two-phase) transactions older than $1 seconds, in every database: creating a logical slot
-- waits until every transaction running at that moment ends, and a forgotten prepared one never does.
SELECT p.gid,
       p.database::text,
       quote_literal(p.gid) AS quoted_gid,
       extract(epoch FROM now() - p.prepared)::bigint AS age_seconds
FROM pg_catalog.pg_prepared_xacts p
WHERE p.prepared < now() - make_interval(secs => $1::float8)
ORDER BY p.prepared
