SELECT e.extname::text, e.extversion
FROM pg_catalog.pg_extension e
WHERE e.extname <> 'plpgsql'
ORDER BY e.extname
