//! The source checks (docs/checks.md): server settings DMS needs for logical replication, the migration
//! user's rights, and table shapes that DMS handles badly. Aurora/RDS and plain PostgreSQL differ in how
//! settings and rights are fixed (parameter group and `rds_replication` versus `ALTER SYSTEM` and the
//! REPLICATION attribute); each fix is written for the server actually found.

use std::collections::BTreeMap;

use tokio_postgres::{Client, Row};

use super::catalog::{self, MappedColumn, MappedTable};
use super::{
    first_names, ids, plural, run_query, Check, CheckConfig, CheckStatus, Connections,
    MIN_SERVER_VERSION_NUM, NEWEST_DMS_MAJOR,
};
use crate::errors::StepError;
use crate::rules::schema_objects::SchemaObject;

const SETTINGS_SQL: &str = include_str!("sql/source_settings.sql");
const LEFTOVER_SLOTS_SQL: &str = include_str!("sql/source_leftover_slots.sql");
const PREPARED_TRANSACTIONS_SQL: &str = include_str!("sql/source_prepared_transactions.sql");
const LONG_TRANSACTIONS_SQL: &str = include_str!("sql/source_long_transactions.sql");
const EXTENSIONS_SQL: &str = include_str!("sql/source_extensions.sql");
pub(super) const SCHEMA_CREATE_SQL: &str = include_str!("sql/heartbeat_schema.sql");

/// DMS requires at least this `wal_sender_timeout` (0 disables the timeout, which is also accepted).
const MIN_WAL_SENDER_TIMEOUT_MS: i64 = 10_000;
/// One walsender for the task's CDC stream and one for the full load's or a restart's overlap (the
/// guide's minimum).
const MIN_WAL_SENDERS: i32 = 2;

/// What the target checks need to know about the source (sent back by the in-VPC source checks).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFacts {
    pub version_num: i32,
    pub version: String,
    /// Mapped tables, qualified and quoted where needed.
    pub tables: Vec<String>,
    /// Installed extensions (plpgsql aside), by name.
    pub extensions: Vec<String>,
    /// Every schema object of the mapped tables and their schemas (`schema_objects`).
    pub inventory: Vec<SchemaObject>,
}

#[derive(Debug, Clone)]
pub struct SourceReport {
    pub checks: Vec<Check>,
    pub facts: SourceFacts,
    /// The mapped tables as read, for the way back's checks of the source (the same read they need).
    pub(super) tables: Vec<catalog::MappedTable>,
}

/// Runs every source check of docs/checks.md, in `ids::SOURCE` order. Errors only when a query cannot run
/// (connection lost, a catalog the role may not read): a finding is a check status, never an error.
pub async fn run_source_checks(
    client: &Client,
    config: &CheckConfig,
) -> Result<SourceReport, StepError> {
    run_source_checks_on(Connections::one(client), config).await
}

/// `run_source_checks` with the schema inventory read on the second connection.
pub async fn run_source_checks_on(
    connections: Connections<'_>,
    config: &CheckConfig,
) -> Result<SourceReport, StepError> {
    let client = connections.first;
    let threshold = f64::from(config.long_transaction_seconds);
    let threshold_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&threshold];
    let heartbeat_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] =
        [&config.heartbeat_schema];
    let (settings, slots, catalog, prepared, long, extensions, heartbeat) = tokio::try_join!(
        run_query(client, ids::SOURCE_VERSION, SETTINGS_SQL, &[]),
        run_query(client, ids::SOURCE_LEFTOVER_SLOTS, LEFTOVER_SLOTS_SQL, &[]),
        catalog::read_catalog(
            connections,
            &config.selection,
            [
                ids::SOURCE_PRIMARY_KEYS,
                ids::SOURCE_LOB_COLUMNS,
                ids::TARGET_SCHEMA_MATCHES
            ]
        ),
        run_query(
            client,
            ids::SOURCE_PREPARED_TRANSACTIONS,
            PREPARED_TRANSACTIONS_SQL,
            &threshold_param
        ),
        run_query(
            client,
            ids::SOURCE_LONG_TRANSACTIONS,
            LONG_TRANSACTIONS_SQL,
            &threshold_param
        ),
        run_query(client, ids::SOURCE_EXTENSIONS, EXTENSIONS_SQL, &[]),
        run_query(
            client,
            ids::SOURCE_HEARTBEAT_SCHEMA,
            SCHEMA_CREATE_SQL,
            &heartbeat_param
        ),
    )?;
    let settings = Settings::from_rows(&settings)?;
    let catalog::Catalog {
        tables,
        columns,
        inventory,
    } = catalog;
    let checks = vec![
        version_check(&settings),
        wal_level_check(&settings),
        wal_sender_timeout_check(&settings),
        max_wal_senders_check(&settings),
        replication_slots_check(&settings),
        leftover_slots_check(&slots),
        replication_role_check(&settings),
        select_privileges_check(&tables, &settings),
        primary_keys_check(&tables, config.cdc),
        lob_columns_check(&columns),
        unbounded_numeric_check(&columns),
        unlogged_tables_check(&tables, config.cdc),
        partitioned_tables_check(&tables),
        prepared_transactions_check(&prepared, config.long_transaction_seconds),
        long_transactions_check(&long, config.long_transaction_seconds),
        extensions_check(&extensions),
        heartbeat_schema_check(&heartbeat, &config.heartbeat_schema),
    ];
    let facts = SourceFacts {
        version_num: settings.version_num,
        version: settings.version.clone(),
        tables: tables.iter().map(|t| t.qualified.clone()).collect(),
        extensions: extensions.iter().map(|r| r.get::<_, String>(0)).collect(),
        inventory,
    };
    Ok(SourceReport {
        checks,
        facts,
        tables,
    })
}

/// `source.prepared_transactions` and `source.long_transactions` alone, for `cutover-check`: before the
/// switch, an open transaction holds changes the target has not seen yet.
pub async fn run_transaction_checks(
    client: &Client,
    threshold_seconds: u32,
) -> Result<Vec<Check>, StepError> {
    let threshold = f64::from(threshold_seconds);
    let param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&threshold];
    let (prepared, long) = tokio::try_join!(
        run_query(
            client,
            ids::SOURCE_PREPARED_TRANSACTIONS,
            PREPARED_TRANSACTIONS_SQL,
            &param
        ),
        run_query(
            client,
            ids::SOURCE_LONG_TRANSACTIONS,
            LONG_TRANSACTIONS_SQL,
            &param
        ),
    )?;
    Ok(vec![
        prepared_transactions_check(&prepared, threshold_seconds),
        long_transactions_check(&long, threshold_seconds),
    ])
}

struct Settings {
    version_num: i32,
    version: String,
    wal_level: String,
    /// Some on RDS and Aurora only.
    rds_logical_replication: Option<String>,
    is_aurora: bool,
    wal_sender_timeout_ms: i64,
    max_wal_senders: i32,
    wal_senders_in_use: i32,
    max_replication_slots: i32,
    slots_in_use: i32,
    user_name: String,
    quoted_user: String,
    is_superuser: bool,
    has_replication_attribute: bool,
    in_rds_replication: bool,
}

impl Settings {
    fn from_rows(rows: &[Row]) -> Result<Settings, StepError> {
        let row = rows.first().ok_or_else(|| {
            StepError::new(
                crate::errors::ErrorName::PostgresQueryFailed,
                "check source.version: the connected role is not in pg_roles",
            )
        })?;
        Ok(Settings {
            version_num: row.get("version_num"),
            version: row.get("version"),
            wal_level: row.get("wal_level"),
            rds_logical_replication: row.get("rds_logical_replication"),
            is_aurora: row.get("is_aurora"),
            wal_sender_timeout_ms: row.get("wal_sender_timeout_ms"),
            max_wal_senders: row.get("max_wal_senders"),
            wal_senders_in_use: row.get("wal_senders_in_use"),
            max_replication_slots: row.get("max_replication_slots"),
            slots_in_use: row.get("slots_in_use"),
            user_name: row.get("user_name"),
            quoted_user: row.get("quoted_user"),
            is_superuser: row.get("is_superuser"),
            has_replication_attribute: row.get("has_replication_attribute"),
            in_rds_replication: row.get("in_rds_replication"),
        })
    }

    fn is_rds(&self) -> bool {
        self.rds_logical_replication.is_some()
    }

    /// How a server setting is changed here: the parameter group on RDS/Aurora, ALTER SYSTEM elsewhere.
    fn setting_fix(&self, name: &str, value: &str, restart: bool) -> String {
        if self.is_rds() {
            let group = if self.is_aurora {
                "the DB cluster parameter group of the Aurora cluster"
            } else {
                "the DB parameter group of the instance"
            };
            let after = if restart {
                ", then reboot the writer instance (a static parameter)"
            } else {
                " (dynamic: applies without a reboot)"
            };
            format!("Set `{name} = {value}` in {group}{after}.")
        } else {
            let after = if restart {
                "-- then restart PostgreSQL (the setting takes effect only at server start)"
            } else {
                "SELECT pg_reload_conf();"
            };
            format!("ALTER SYSTEM SET {name} = '{value}';\n{after}")
        }
    }
}

fn major(version_num: i32) -> i32 {
    version_num / 10000
}

pub(super) fn version_status(version_num: i32, side: &str, version: &str) -> (CheckStatus, String) {
    if version_num < MIN_SERVER_VERSION_NUM {
        (
            CheckStatus::Fail,
            format!("{side} runs PostgreSQL {version}: older than 12, which these checks and supported DMS versions need"),
        )
    } else if major(version_num) > NEWEST_DMS_MAJOR {
        (
            CheckStatus::Warn,
            format!("{side} runs PostgreSQL {version}: newer than the latest major the DMS documentation lists ({NEWEST_DMS_MAJOR}); check the DMS release notes"),
        )
    } else {
        (
            CheckStatus::Pass,
            format!("{side} runs PostgreSQL {version}"),
        )
    }
}

fn version_check(s: &Settings) -> Check {
    let (status, summary) = version_status(s.version_num, "the source", &s.version);
    let fix = if status == CheckStatus::Pass {
        ""
    } else {
        "Upgrade the source to a major version DMS supports (12 to 17) before migrating."
    };
    Check::new(ids::SOURCE_VERSION, status, summary, Vec::new(), fix)
}

fn wal_level_check(s: &Settings) -> Check {
    let logical = s.wal_level == "logical";
    // On RDS and Aurora wal_level is not settable: rds.logical_replication = 1 sets it (after a reboot).
    let rds_on = s
        .rds_logical_replication
        .as_deref()
        .map(|v| matches!(v, "on" | "1" | "true"));
    match (logical, rds_on) {
        (true, None | Some(true)) => Check::pass(
            ids::SOURCE_WAL_LEVEL,
            "wal_level is logical: changes can be decoded for CDC",
        ),
        (_, Some(_)) => Check::new(
            ids::SOURCE_WAL_LEVEL,
            CheckStatus::Fail,
            format!(
                "rds.logical_replication is {} and wal_level is {}: DMS cannot create a logical replication slot",
                s.rds_logical_replication.as_deref().unwrap_or("?"),
                s.wal_level
            ),
            Vec::new(),
            s.setting_fix("rds.logical_replication", "1", true),
        ),
        (false, None) => Check::new(
            ids::SOURCE_WAL_LEVEL,
            CheckStatus::Fail,
            format!(
                "wal_level is {}: DMS needs logical to create a replication slot",
                s.wal_level
            ),
            Vec::new(),
            s.setting_fix("wal_level", "logical", true),
        ),
    }
}

fn wal_sender_timeout_check(s: &Settings) -> Check {
    let ms = s.wal_sender_timeout_ms;
    if ms == 0 || ms >= MIN_WAL_SENDER_TIMEOUT_MS {
        let what = if ms == 0 {
            "0 (disabled)".to_string()
        } else {
            format!("{ms} ms")
        };
        return Check::pass(
            ids::SOURCE_WAL_SENDER_TIMEOUT,
            format!("wal_sender_timeout is {what}"),
        );
    }
    Check::new(
        ids::SOURCE_WAL_SENDER_TIMEOUT,
        CheckStatus::Fail,
        format!("wal_sender_timeout is {ms} ms: DMS needs at least {MIN_WAL_SENDER_TIMEOUT_MS} ms (or 0), else the server drops the CDC stream while DMS is busy"),
        Vec::new(),
        s.setting_fix("wal_sender_timeout", "60000", false),
    )
}

fn max_wal_senders_check(s: &Settings) -> Check {
    let free = s.max_wal_senders - s.wal_senders_in_use;
    if s.max_wal_senders >= MIN_WAL_SENDERS && free >= 1 {
        return Check::pass(
            ids::SOURCE_MAX_WAL_SENDERS,
            format!(
                "max_wal_senders is {} ({} in use)",
                s.max_wal_senders, s.wal_senders_in_use
            ),
        );
    }
    let wanted = (s.wal_senders_in_use + MIN_WAL_SENDERS).max(10);
    Check::new(
        ids::SOURCE_MAX_WAL_SENDERS,
        CheckStatus::Fail,
        format!(
            "max_wal_senders is {} with {} in use: DMS needs at least {MIN_WAL_SENDERS} and one free",
            s.max_wal_senders, s.wal_senders_in_use
        ),
        Vec::new(),
        s.setting_fix("max_wal_senders", &wanted.to_string(), true),
    )
}

fn replication_slots_check(s: &Settings) -> Check {
    let free = s.max_replication_slots - s.slots_in_use;
    if free >= 1 {
        return Check::pass(
            ids::SOURCE_REPLICATION_SLOTS,
            format!(
                "{free} of {} replication slots free (the task needs one)",
                s.max_replication_slots
            ),
        );
    }
    let wanted = (s.slots_in_use + 2).max(10);
    Check::new(
        ids::SOURCE_REPLICATION_SLOTS,
        CheckStatus::Fail,
        format!(
            "no free replication slot: {} of max_replication_slots {} are used; the DMS task cannot create its slot",
            s.slots_in_use, s.max_replication_slots
        ),
        Vec::new(),
        format!(
            "Drop slots nobody uses (see source.leftover_slots), or raise the limit:\n{}",
            s.setting_fix("max_replication_slots", &wanted.to_string(), true)
        ),
    )
}

fn leftover_slots_check(rows: &[Row]) -> Check {
    if rows.is_empty() {
        return Check::pass(ids::SOURCE_LEFTOVER_SLOTS, "no inactive replication slot");
    }
    let names: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let details: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} ({} slot, retains {} of WAL)",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(3)
            )
        })
        .collect();
    let fix = rows
        .iter()
        .map(|r| {
            format!(
                "SELECT pg_drop_replication_slot({});",
                r.get::<_, String>(4)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Check::new(
        ids::SOURCE_LEFTOVER_SLOTS,
        CheckStatus::Warn,
        format!(
            "{} inactive: each keeps WAL on disk until dropped ({}); drop those no consumer will resume",
            plural(rows.len(), "replication slot is", "replication slots are"),
            first_names(&details)
        ),
        names,
        fix,
    )
}

fn replication_role_check(s: &Settings) -> Check {
    if s.is_superuser || s.has_replication_attribute || s.in_rds_replication {
        let how = if s.is_superuser {
            "is a superuser"
        } else if s.in_rds_replication {
            "is a member of rds_replication"
        } else {
            "has the REPLICATION attribute"
        };
        return Check::pass(
            ids::SOURCE_REPLICATION_ROLE,
            format!(
                "{} {how}: it may create a logical replication slot",
                s.user_name
            ),
        );
    }
    // On RDS/Aurora the REPLICATION attribute cannot be granted; the rds_replication role carries it.
    let fix = if s.is_rds() {
        format!("GRANT rds_replication TO {};", s.quoted_user)
    } else {
        format!("ALTER ROLE {} WITH REPLICATION;", s.quoted_user)
    };
    Check::new(
        ids::SOURCE_REPLICATION_ROLE,
        CheckStatus::Fail,
        format!(
            "{} may not use replication: DMS cannot create its slot or stream changes",
            s.user_name
        ),
        vec![s.quoted_user.clone()],
        fix,
    )
}

fn select_privileges_check(tables: &[MappedTable], s: &Settings) -> Check {
    let unreadable: Vec<&MappedTable> = tables
        .iter()
        .filter(|t| !t.schema_usage || t.missing_privileges.iter().any(|p| p == "SELECT"))
        .collect();
    if unreadable.is_empty() {
        return Check::pass(
            ids::SOURCE_SELECT_PRIVILEGES,
            format!("{} may read every mapped table", s.user_name),
        );
    }
    let names: Vec<String> = unreadable.iter().map(|t| t.qualified.clone()).collect();
    let schemas: std::collections::BTreeSet<&str> = unreadable
        .iter()
        .map(|t| t.quoted_schema.as_str())
        .collect();
    let fix = schemas
        .iter()
        .map(|schema| {
            format!(
                "GRANT USAGE ON SCHEMA {schema} TO {u};\nGRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {u};",
                u = s.quoted_user
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Check::new(
        ids::SOURCE_SELECT_PRIVILEGES,
        CheckStatus::Fail,
        format!(
            "{} may not read {}: the full load of those tables fails ({})",
            s.user_name,
            plural(names.len(), "mapped table", "mapped tables"),
            first_names(&names)
        ),
        names,
        fix,
    )
}

/// Leaf tables (partitions included: replica identity is per partition) whose UPDATE and DELETE reach
/// logical decoding without a usable key: no primary key and not REPLICA IDENTITY FULL, or REPLICA
/// IDENTITY NOTHING whatever the keys.
fn primary_keys_check(tables: &[MappedTable], cdc: bool) -> Check {
    let keyless: Vec<&MappedTable> = tables
        .iter()
        .filter(|t| {
            t.relkind == "r"
                && (t.replica_identity == "n" || (t.replica_identity != "f" && !t.has_primary_key))
        })
        .collect();
    if keyless.is_empty() {
        return Check::pass(
            ids::SOURCE_PRIMARY_KEYS,
            "every mapped table has a primary key or REPLICA IDENTITY FULL",
        );
    }
    let names: Vec<String> = keyless.iter().map(|t| t.qualified.clone()).collect();
    let fix = keyless
        .iter()
        .map(|t| {
            if t.replica_identity == "n" && t.has_primary_key {
                format!("ALTER TABLE {} REPLICA IDENTITY DEFAULT;", t.qualified)
            } else {
                format!(
                    "ALTER TABLE {} REPLICA IDENTITY FULL;  -- or add a primary key",
                    t.qualified
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let status = if cdc {
        CheckStatus::Fail
    } else {
        CheckStatus::Warn
    };
    Check::new(
        ids::SOURCE_PRIMARY_KEYS,
        status,
        format!(
            "{} no primary key (and no REPLICA IDENTITY FULL) or REPLICA IDENTITY NOTHING: their UPDATE and DELETE are lost in CDC and batch apply cannot handle them ({})",
            plural(names.len(), "table has", "tables have"),
            first_names(&names)
        ),
        names,
        fix,
    )
}

fn lob_columns_check(columns: &[MappedColumn]) -> Check {
    let lobs: Vec<&MappedColumn> = columns.iter().filter(|c| c.is_lob).collect();
    if lobs.is_empty() {
        return Check::pass(ids::SOURCE_LOB_COLUMNS, "no column DMS treats as a LOB");
    }
    let names: Vec<String> = lobs.iter().map(|c| c.qualified.clone()).collect();
    // One measuring statement per table, all its LOB columns at once.
    let mut per_table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for column in &lobs {
        per_table
            .entry(&*column.table)
            .or_default()
            .push(column.quoted_column());
    }
    let measures = per_table
        .iter()
        .map(|(table, cols)| {
            let parts = cols
                .iter()
                .map(|c| format!("max(octet_length({c}::text)) AS {c}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT {parts} FROM {table};")
        })
        .collect::<Vec<_>>()
        .join("\n");
    Check::new(
        ids::SOURCE_LOB_COLUMNS,
        CheckStatus::Warn,
        format!(
            "{} in {} {} LOBs for DMS (text, bytea, json, jsonb, xml, arrays, varchar without length): limited LOB mode fails the task on a value larger than LobMaxSize ({})",
            plural(names.len(), "column", "columns"),
            plural(per_table.len(), "table", "tables"),
            if names.len() == 1 { "is a" } else { "are" },
            first_names(&names)
        ),
        names,
        format!("Set the stack parameter LobMaxSize (KB) above the largest value; measure it with:\n{measures}"),
    )
}

fn unbounded_numeric_check(columns: &[MappedColumn]) -> Check {
    let names: Vec<String> = columns
        .iter()
        .filter(|c| c.is_unbounded_numeric)
        .map(|c| c.qualified.clone())
        .collect();
    if names.is_empty() {
        return Check::pass(
            ids::SOURCE_UNBOUNDED_NUMERIC,
            "no numeric column without precision",
        );
    }
    Check::new(
        ids::SOURCE_UNBOUNDED_NUMERIC,
        CheckStatus::Warn,
        format!(
            "{} numeric without precision: DMS maps them to NUMERIC(28,6) and rounds unless the source endpoint maps unbounded numerics as strings ({})",
            plural(names.len(), "column is", "columns are"),
            first_names(&names)
        ),
        names,
        "Keep the source endpoint setting MapUnboundedNumericAsString = true (the stack sets it), or give each column a precision: ALTER TABLE <table> ALTER COLUMN <column> TYPE numeric(<precision>, <scale>);",
    )
}

/// Unlogged tables write no WAL, so logical decoding (DMS CDC) never sees their changes.
fn unlogged_tables_check(tables: &[MappedTable], cdc: bool) -> Check {
    let names: Vec<String> = tables
        .iter()
        .filter(|t| t.persistence == "u")
        .map(|t| t.qualified.clone())
        .collect();
    if names.is_empty() {
        return Check::pass(ids::SOURCE_UNLOGGED_TABLES, "no unlogged mapped table");
    }
    let fix = names
        .iter()
        .map(|t| format!("ALTER TABLE {t} SET LOGGED;  -- or exclude it from the table mappings"))
        .collect::<Vec<_>>()
        .join("\n");
    let status = if cdc {
        CheckStatus::Fail
    } else {
        CheckStatus::Pass
    };
    Check::new(
        ids::SOURCE_UNLOGGED_TABLES,
        status,
        format!(
            "{} unlogged: they write no WAL, so CDC never sees their changes ({})",
            plural(names.len(), "table is", "tables are"),
            first_names(&names)
        ),
        names,
        if cdc { fix } else { String::new() },
    )
}

fn partitioned_tables_check(tables: &[MappedTable]) -> Check {
    let roots: Vec<&MappedTable> = tables
        .iter()
        .filter(|t| t.relkind == "p" && !t.is_partition)
        .collect();
    if roots.is_empty() {
        return Check::pass(ids::SOURCE_PARTITIONED_TABLES, "no partitioned table");
    }
    let names: Vec<String> = roots.iter().map(|t| t.qualified.clone()).collect();
    let partitions: i64 = roots.iter().map(|t| i64::from(t.partitions)).sum();
    Check::new(
        ids::SOURCE_PARTITIONED_TABLES,
        CheckStatus::Warn,
        format!(
            "{} with {} in all: DMS reads and replicates each partition as a table of its own, so the target needs the same partitions ({})",
            plural(names.len(), "partitioned table", "partitioned tables"),
            plural(usize::try_from(partitions).unwrap_or(0), "partition", "partitions"),
            first_names(&names)
        ),
        names,
        "Create the same partitioned tables and partitions on the target before the load (`dms-migrate schema apply` does), and keep the partitions selected in the table mappings.",
    )
}

fn age(seconds: i64) -> String {
    if seconds >= 3600 {
        format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60)
    } else {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

fn prepared_transactions_check(rows: &[Row], threshold_seconds: u32) -> Check {
    if rows.is_empty() {
        return Check::pass(
            ids::SOURCE_PREPARED_TRANSACTIONS,
            format!("no prepared transaction older than {threshold_seconds} s"),
        );
    }
    let names: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let fix = rows
        .iter()
        .map(|r| {
            format!(
                "ROLLBACK PREPARED {};  -- connected to database {}, or COMMIT PREPARED if it must complete",
                r.get::<_, String>(2),
                r.get::<_, String>(1)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let oldest: i64 = rows.iter().map(|r| r.get::<_, i64>(3)).max().unwrap_or(0);
    Check::new(
        ids::SOURCE_PREPARED_TRANSACTIONS,
        CheckStatus::Fail,
        format!(
            "{} open (oldest {}): creating the DMS replication slot waits until they end, so the task hangs at start",
            plural(rows.len(), "prepared transaction is", "prepared transactions are"),
            age(oldest)
        ),
        names,
        fix,
    )
}

fn long_transactions_check(rows: &[Row], threshold_seconds: u32) -> Check {
    if rows.is_empty() {
        return Check::pass(
            ids::SOURCE_LONG_TRANSACTIONS,
            format!("no transaction open longer than {threshold_seconds} s"),
        );
    }
    let sessions: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "pid {} ({}@{}, {}, open {})",
                r.get::<_, i32>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                age(r.get::<_, i64>(4))
            )
        })
        .collect();
    let fix = rows
        .iter()
        .map(|r| {
            format!(
                "SELECT pg_terminate_backend({});  -- or let it finish before starting the task",
                r.get::<_, i32>(0)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Check::new(
        ids::SOURCE_LONG_TRANSACTIONS,
        CheckStatus::Warn,
        format!(
            "{} open longer than {threshold_seconds} s: slot creation waits for them and they hold the slot and vacuum back ({})",
            plural(rows.len(), "transaction is", "transactions are"),
            first_names(&sessions)
        ),
        sessions,
        fix,
    )
}

fn extensions_check(rows: &[Row]) -> Check {
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let summary = if names.is_empty() {
        "no extension besides plpgsql".to_string()
    } else {
        format!(
            "{} installed ({}); target.extensions checks the target has them",
            plural(names.len(), "extension", "extensions"),
            first_names(&names)
        )
    };
    Check::new(
        ids::SOURCE_EXTENSIONS,
        CheckStatus::Pass,
        summary,
        rows.iter().map(|r| r.get::<_, String>(0)).collect(),
        "",
    )
}

/// Rows of `sql/heartbeat_schema.sql`: whether the schema exists and the role may create in it, and the
/// fix when not. Shared by the source heartbeat check and the target's control-schema privileges.
pub(super) fn schema_create_gap(rows: &[Row]) -> Option<(String, String)> {
    let row = rows.first()?;
    let exists: bool = row.get(0);
    let can_create: bool = row.get(1);
    let schema: String = row.get(2);
    let user: String = row.get(3);
    if !exists {
        Some((
            format!("schema {schema} does not exist"),
            format!("CREATE SCHEMA {schema};\nGRANT USAGE, CREATE ON SCHEMA {schema} TO {user};"),
        ))
    } else if !can_create {
        Some((
            format!("{user} may not create tables in schema {schema}"),
            format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {user};"),
        ))
    } else {
        None
    }
}

fn heartbeat_schema_check(rows: &[Row], schema: &str) -> Check {
    match schema_create_gap(rows) {
        None => Check::pass(
            ids::SOURCE_HEARTBEAT_SCHEMA,
            format!("the DMS heartbeat can create its table in schema {schema}"),
        ),
        Some((why, fix)) => Check::new(
            ids::SOURCE_HEARTBEAT_SCHEMA,
            CheckStatus::Fail,
            format!("{why}: the DMS heartbeat (HeartbeatEnable) creates awsdms_heartbeat there, and without it the task fails"),
            vec![crate::rules::sql_ident::quote_if_needed(schema)],
            fix,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            version_num: 150004,
            version: "15.4".into(),
            wal_level: "logical".into(),
            rds_logical_replication: None,
            is_aurora: false,
            wal_sender_timeout_ms: 60_000,
            max_wal_senders: 10,
            wal_senders_in_use: 0,
            max_replication_slots: 10,
            slots_in_use: 0,
            user_name: "Mig User".into(),
            quoted_user: "\"Mig User\"".into(),
            is_superuser: false,
            has_replication_attribute: false,
            in_rds_replication: false,
        }
    }

    #[test]
    fn wal_sender_timeout_fails_below_ten_seconds_unless_zero() {
        let mut s = settings();
        for (ms, status) in [
            (0, CheckStatus::Pass),
            (9_999, CheckStatus::Fail),
            (10_000, CheckStatus::Pass),
        ] {
            s.wal_sender_timeout_ms = ms;
            assert_eq!(wal_sender_timeout_check(&s).status, status, "{ms}");
        }
    }

    #[test]
    fn aurora_fixes_name_the_parameter_group_and_rds_replication() {
        let mut s = settings();
        s.rds_logical_replication = Some("0".into());
        s.wal_level = "replica".into();
        s.is_aurora = true;
        let check = wal_level_check(&s);
        assert_eq!(check.status, CheckStatus::Fail);
        assert!(
            check.fix.contains("rds.logical_replication = 1"),
            "{}",
            check.fix
        );
        assert!(
            check.fix.contains("DB cluster parameter group"),
            "{}",
            check.fix
        );
        let role = replication_role_check(&s);
        assert_eq!(role.fix, "GRANT rds_replication TO \"Mig User\";");
        s.rds_logical_replication = None;
        assert_eq!(
            replication_role_check(&s).fix,
            "ALTER ROLE \"Mig User\" WITH REPLICATION;"
        );
        s.in_rds_replication = true;
        assert_eq!(replication_role_check(&s).status, CheckStatus::Pass);
    }

    #[test]
    fn plain_postgres_fixes_use_alter_system() {
        let mut s = settings();
        s.wal_level = "replica".into();
        let check = wal_level_check(&s);
        assert!(check
            .fix
            .starts_with("ALTER SYSTEM SET wal_level = 'logical';"));
        s.max_wal_senders = 1;
        assert_eq!(max_wal_senders_check(&s).status, CheckStatus::Fail);
        s.max_wal_senders = 2;
        s.wal_senders_in_use = 2;
        assert_eq!(max_wal_senders_check(&s).status, CheckStatus::Fail);
        s.wal_senders_in_use = 1;
        assert_eq!(max_wal_senders_check(&s).status, CheckStatus::Pass);
        s.slots_in_use = 10;
        assert_eq!(replication_slots_check(&s).status, CheckStatus::Fail);
    }

    #[test]
    fn versions() {
        assert_eq!(version_status(110000, "x", "11").0, CheckStatus::Fail);
        assert_eq!(version_status(170002, "x", "17.2").0, CheckStatus::Pass);
        assert_eq!(version_status(180000, "x", "18").0, CheckStatus::Warn);
        assert_eq!(age(59), "0m59s");
        assert_eq!(age(7322), "2h02m");
    }
}
