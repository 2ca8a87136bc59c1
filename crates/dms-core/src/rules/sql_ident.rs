//! PostgreSQL identifier quoting, done in Rust exactly as the server's `quote_ident` does it, so catalog
//! reads return bare names (quoting 10^5 names in SQL is a measurable share of a preflight) and names
//! built here read the same as names quoted by the server.

/// Every key word `quote_ident` quotes (reserved, type/function-name and column-name key words: all but the
/// unreserved ones), from PostgreSQL 12 to 17. A word that is a key word in a newer version only (the JSON
/// constructors, `system_user`, `merge_action`) is quoted for every server: still valid SQL, and the same
/// name reads the same on a source and a target of different versions. A `match` (length first, then
/// bytes): this runs for every name a preflight reads, 10^5 of them on a large schema.
fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "all"
            | "analyse"
            | "analyze"
            | "and"
            | "any"
            | "array"
            | "as"
            | "asc"
            | "asymmetric"
            | "authorization"
            | "between"
            | "bigint"
            | "binary"
            | "bit"
            | "boolean"
            | "both"
            | "case"
            | "cast"
            | "char"
            | "character"
            | "check"
            | "coalesce"
            | "collate"
            | "collation"
            | "column"
            | "concurrently"
            | "constraint"
            | "create"
            | "cross"
            | "current_catalog"
            | "current_date"
            | "current_role"
            | "current_schema"
            | "current_time"
            | "current_timestamp"
            | "current_user"
            | "dec"
            | "decimal"
            | "default"
            | "deferrable"
            | "desc"
            | "distinct"
            | "do"
            | "else"
            | "end"
            | "except"
            | "exists"
            | "extract"
            | "false"
            | "fetch"
            | "float"
            | "for"
            | "foreign"
            | "freeze"
            | "from"
            | "full"
            | "grant"
            | "greatest"
            | "group"
            | "grouping"
            | "having"
            | "ilike"
            | "in"
            | "initially"
            | "inner"
            | "inout"
            | "int"
            | "integer"
            | "intersect"
            | "interval"
            | "into"
            | "is"
            | "isnull"
            | "join"
            | "json"
            | "json_array"
            | "json_arrayagg"
            | "json_exists"
            | "json_object"
            | "json_objectagg"
            | "json_query"
            | "json_scalar"
            | "json_serialize"
            | "json_table"
            | "json_value"
            | "lateral"
            | "leading"
            | "least"
            | "left"
            | "like"
            | "limit"
            | "localtime"
            | "localtimestamp"
            | "merge_action"
            | "national"
            | "natural"
            | "nchar"
            | "none"
            | "normalize"
            | "not"
            | "notnull"
            | "null"
            | "nullif"
            | "numeric"
            | "offset"
            | "on"
            | "only"
            | "or"
            | "order"
            | "out"
            | "outer"
            | "overlaps"
            | "overlay"
            | "placing"
            | "position"
            | "precision"
            | "primary"
            | "real"
            | "references"
            | "returning"
            | "right"
            | "row"
            | "select"
            | "session_user"
            | "setof"
            | "similar"
            | "smallint"
            | "some"
            | "substring"
            | "symmetric"
            | "system_user"
            | "table"
            | "tablesample"
            | "then"
            | "time"
            | "timestamp"
            | "to"
            | "trailing"
            | "treat"
            | "trim"
            | "true"
            | "union"
            | "unique"
            | "user"
            | "using"
            | "values"
            | "varchar"
            | "variadic"
            | "verbose"
            | "when"
            | "where"
            | "window"
            | "with"
            | "xmlattributes"
            | "xmlconcat"
            | "xmlelement"
            | "xmlexists"
            | "xmlforest"
            | "xmlnamespaces"
            | "xmlparse"
            | "xmlpi"
            | "xmlroot"
            | "xmlserialize"
            | "xmltable"
    )
}

/// Always quoted: safe to paste into SQL.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quoted only where needed, as `quote_ident` does: a name that starts with a lowercase ASCII letter or
/// `_`, has only lowercase ASCII letters, digits and `_`, and is not a key word stays bare.
pub fn quote_if_needed(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_quoted(&mut out, name);
    out
}

/// `quote_if_needed` appended to `out`, for building qualified names without intermediate strings.
pub fn push_quoted(out: &mut String, name: &str) {
    let bytes = name.as_bytes();
    let plain = bytes
        .first()
        .is_some_and(|&b| b.is_ascii_lowercase() || b == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !is_keyword(name);
    if plain {
        out.push_str(name);
    } else {
        out.push('"');
        for c in name.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    }
}

/// `schema.name`, each part quoted where needed.
pub fn qualified(schema: &str, name: &str) -> String {
    let mut out = String::with_capacity(schema.len() + name.len() + 5);
    push_quoted(&mut out, schema);
    out.push('.');
    push_quoted(&mut out, name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_postgres_rules() {
        assert_eq!(quote_if_needed("orders"), "orders");
        assert_eq!(quote_if_needed("Orders"), "\"Orders\"");
        assert_eq!(quote_if_needed("line items"), "\"line items\"");
        assert_eq!(quote_if_needed("user"), "\"user\"");
        assert_eq!(quote_if_needed("time"), "\"time\"");
        assert_eq!(quote_if_needed("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_if_needed("1st"), "\"1st\"");
        assert_eq!(quote_if_needed("price$"), "\"price$\"");
        assert_eq!(quote_if_needed("café"), "\"café\"");
        assert_eq!(quote_if_needed(""), "\"\"");
        assert_eq!(quote_if_needed("_x1"), "_x1");
        assert_eq!(quote("x"), "\"x\"");
        assert_eq!(qualified("Sales", "order"), "\"Sales\".\"order\"");
        assert_eq!(qualified("public", "t"), "public.t");
    }
}
