-- Every extension the target server offers, and whether it is installed (compared with the source's
-- list in Rust, so this read does not wait for the source).
SELECT a.name::text,
       quote_ident(a.name) AS quoted_name,
       a.installed_version IS NOT NULL AS installed
FROM pg_catalog.pg_available_extensions a
