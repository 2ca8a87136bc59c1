//! The way back's checks (docs/fallback.md; ids `fallback.*` in docs/checks.md): what the reverse DMS task
//! needs from PlanetScale as its source (logical decoding through `test_decoding` by a REPLICATION user,
//! room for one more slot and WAL sender, a bounded WAL retention) and from Aurora as its target (writing
//! every mapped table with triggers and foreign keys not firing). Two halves, because they may run on
//! different machines: `run_target_fallback_checks` where PlanetScale is reachable (the workstation, the
//! premigration-assessment Lambda), Aurora's with the source checks where Aurora is
//! (`run_source_checks_and_fallback`: the in-VPC source-checks Lambda; `run_all_checks`: the workstation). `dms-migrate preflight` runs both unless `--no-fallback`; the assessment
//! when the stack's `EnableFallback` is `true`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

use super::catalog::MappedTable;
use super::target::{read_for_writes, write_checks, WriteReads};
use super::{ids, run_source_checks, Check, CheckConfig, CheckStatus, SourceReport};
use crate::errors::StepError;
use crate::pg::{classify_pg_error, PgConnectOptions};

/// Server settings of the target the way-back checks read, in one statement. `max_slot_wal_keep_size`
/// exists from PostgreSQL 13 (no row before: NULL); `pg_settings` gives it in MB, `-1` for no limit.
const TARGET_SETTINGS_SQL: &str = "
SELECT current_setting('wal_level') AS wal_level,
       current_setting('max_replication_slots')::int AS max_replication_slots,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots_in_use,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int AS wal_senders_in_use,
       (SELECT setting::bigint FROM pg_catalog.pg_settings
          WHERE name = 'max_slot_wal_keep_size') AS max_slot_wal_keep_size_mb,
       quote_ident(current_user) AS quoted_user";

/// Below this `max_slot_wal_keep_size` the way back's slot may be invalidated (its WAL removed) after a
/// few gigabytes written while the reverse task lags, and the way back is lost. 4 GB is PlanetScale's
/// default (<https://clickhouse.com/docs/integrations/clickpipes/postgres/source/planetscale>, which
/// recommends raising it for CDC).
const MIN_SLOT_WAL_KEEP_MB: i64 = 4096;

/// Creating a logical slot waits for the transactions running on the target at that moment to end
/// (<https://www.postgresql.org/docs/current/logicaldecoding-explanation.html>): bounded, so preflight never hangs.
const SLOT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

const PLANETSCALE_PARAMETERS: &str = "Clusters > Parameters of the PlanetScale console";

/// PlanetScale's part, in `ids::FALLBACK_TARGET` order, on one session of its own: the settings are read
/// first, then the throwaway slot is created and dropped on the same session, so the slot count never
/// includes the probe's own slot, and PostgreSQL drops that temporary slot when the session ends,
/// whatever happens. A connection that cannot be opened is the error (`Postgres.Unreachable`, ...).
pub async fn run_target_fallback_checks(
    target: &PgConnectOptions,
) -> Result<Vec<Check>, StepError> {
    let mut options = target.clone();
    options.statement_timeout = SLOT_PROBE_TIMEOUT;
    let client = options.connect().await?;
    let settings = client
        .query_one(TARGET_SETTINGS_SQL, &[])
        .await
        .map_err(|e| classify_pg_error(&format!("check {}", ids::FALLBACK_TARGET_WAL_LEVEL), &e))?;
    let settings = TargetSettings::from_row(&settings);
    let slot = slot_probe(&client).await?;
    Ok(vec![
        wal_level_check(&settings.wal_level),
        slot_check(&slot, &settings.quoted_user),
        capacity_check(&settings),
        wal_keep_size_check(settings.max_slot_wal_keep_size_mb),
    ])
}

/// The source checks and, with `fallback`, Aurora's part of the way back after them (in
/// `ids::FALLBACK_SOURCE` order), on one connection to Aurora (the Lambdas'): Aurora's part comes from the
/// source checks' own table read plus three one-row reads, never a second read of the tables.
pub async fn run_source_checks_and_fallback(
    source: &Client,
    config: &CheckConfig,
    fallback: bool,
) -> Result<SourceReport, StepError> {
    let reads = async {
        if fallback {
            read_for_writes(source, config).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (reads, mut report) = tokio::try_join!(reads, run_source_checks(source, config))?;
    if let Some(reads) = reads {
        let way_back = source_fallback_checks(&report.tables, &reads, config);
        report.checks.extend(way_back);
    }
    Ok(report)
}

/// Aurora's part, in `ids::FALLBACK_SOURCE` order: the rules DMS's forward target endpoint is held to
/// (`target.privileges`, `target.session_replication_role`), read on Aurora, which is the reverse task's
/// DMS target: from the source checks' mapped tables (the same statement as `target.privileges` reads)
/// and `target::read_for_writes`'s three one-row reads made on Aurora.
pub(super) fn source_fallback_checks(
    tables: &[MappedTable],
    reads: &WriteReads,
    config: &CheckConfig,
) -> Vec<Check> {
    as_reverse_target(&write_checks(tables, reads, config))
}

/// The write checks of a DMS target, read on Aurora, renamed as the way back's.
fn as_reverse_target(as_target: &[Check]) -> Vec<Check> {
    let reverse = |from: &str, id: &str| -> Check {
        let mut check = as_target
            .iter()
            .find(|c| c.id == from)
            .cloned()
            .unwrap_or_else(|| {
                Check::new(
                    id,
                    CheckStatus::Fail,
                    format!("{from} was not read"),
                    Vec::new(),
                    "",
                )
            });
        check.id = id.to_string();
        check.summary = format!("Aurora as the way back's DMS target: {}", check.summary);
        check
    };
    vec![
        reverse(ids::TARGET_PRIVILEGES, ids::FALLBACK_SOURCE_PRIVILEGES),
        reverse(
            ids::TARGET_SESSION_REPLICATION_ROLE,
            ids::FALLBACK_SOURCE_SESSION_REPLICATION_ROLE,
        ),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TargetSettings {
    wal_level: String,
    max_replication_slots: i32,
    slots_in_use: i32,
    max_wal_senders: i32,
    wal_senders_in_use: i32,
    max_slot_wal_keep_size_mb: Option<i64>,
    quoted_user: String,
}

impl TargetSettings {
    fn from_row(row: &Row) -> Self {
        TargetSettings {
            wal_level: row.get("wal_level"),
            max_replication_slots: row.get("max_replication_slots"),
            slots_in_use: row.get("slots_in_use"),
            max_wal_senders: row.get("max_wal_senders"),
            wal_senders_in_use: row.get("wal_senders_in_use"),
            max_slot_wal_keep_size_mb: row.get("max_slot_wal_keep_size_mb"),
            quoted_user: row.get("quoted_user"),
        }
    }
}

/// How the throwaway slot fared: created and dropped, or refused with the server's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SlotProbe {
    CreatedAndDropped,
    Refused { code: SqlState, message: String },
}

/// Creates a temporary `test_decoding` logical slot with a name of its own, then drops it. Temporary: the
/// server drops it when the session ends, even when the drop below never runs (an error, a lost
/// connection), so no slot is ever left behind to hold WAL. A database error is a finding (the verdict
/// reads it); a lost connection is an error.
async fn slot_probe(client: &Client) -> Result<SlotProbe, StepError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let slot = format!("dms_migrate_preflight_{}_{nanos}", std::process::id());
    let refused = |e: tokio_postgres::Error| -> Result<SlotProbe, StepError> {
        match e.as_db_error() {
            Some(db) => Ok(SlotProbe::Refused {
                code: db.code().clone(),
                message: db.message().to_string(),
            }),
            None => Err(classify_pg_error(
                &format!("check {}", ids::FALLBACK_TARGET_SLOT),
                &e,
            )),
        }
    };
    // https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION
    if let Err(e) = client
        .query_one(
            "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'test_decoding', true)",
            &[&slot],
        )
        .await
    {
        return refused(e);
    }
    match client
        .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[&slot])
        .await
    {
        Ok(_) => Ok(SlotProbe::CreatedAndDropped),
        Err(e) => refused(e),
    }
}

fn wal_level_check(wal_level: &str) -> Check {
    if wal_level == "logical" {
        return Check::pass(
            ids::FALLBACK_TARGET_WAL_LEVEL,
            "the target's wal_level is logical: the way back can decode its changes",
        );
    }
    Check::new(
        ids::FALLBACK_TARGET_WAL_LEVEL,
        CheckStatus::Fail,
        format!("the target's wal_level is {wal_level}, not logical: no logical replication slot can be created, so the way back cannot be armed"),
        vec!["wal_level".to_string()],
        format!(
            "PlanetScale: in {PLANETSCALE_PARAMETERS}, set wal_level to logical; applying it restarts the PlanetScale cluster, so choose the moment.\n\
             Elsewhere: ALTER SYSTEM SET wal_level = logical;  -- then restart the server\n\
             Or run preflight with --no-fallback to migrate without a way back."
        ),
    )
}

fn slot_check(probe: &SlotProbe, user: &str) -> Check {
    let id = ids::FALLBACK_TARGET_SLOT;
    let SlotProbe::Refused { code, message } = probe else {
        return Check::pass(
            id,
            format!("{user} created and dropped a test_decoding logical slot: it has REPLICATION and the plugin is installed"),
        );
    };
    let (why, fix) = if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        (
            "the user lacks the REPLICATION attribute".to_string(),
            format!("ALTER ROLE {user} WITH REPLICATION;  -- as PlanetScale's default role (postgres.<...>), which has REPLICATION"),
        )
    } else if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE {
        (
            "logical decoding is off (see fallback.target_wal_level)".to_string(),
            "Set wal_level to logical first (fallback.target_wal_level), then run preflight again."
                .to_string(),
        )
    } else if *code == SqlState::UNDEFINED_FILE {
        (
            "the server does not have the test_decoding module, which DMS decodes with when PluginName is test-decoding".to_string(),
            "Ask the provider to install the test_decoding contrib module, or run preflight with --no-fallback to migrate without a way back.".to_string(),
        )
    } else if *code == SqlState::CONFIGURATION_LIMIT_EXCEEDED {
        (
            "every replication slot is in use (see fallback.target_replication_capacity)".to_string(),
            "Free a replication slot or raise max_replication_slots (fallback.target_replication_capacity).".to_string(),
        )
    } else if *code == SqlState::QUERY_CANCELED {
        return Check::new(
            id,
            CheckStatus::Warn,
            format!(
                "not proved: creating the slot waited more than {} s for transactions running on the target to end ({message})",
                SLOT_PROBE_TIMEOUT.as_secs()
            ),
            vec![user.to_string()],
            "Run preflight again once the target's long transactions have ended.",
        );
    } else {
        (
            format!("the server refused it (SQLSTATE {})", code.code()),
            "Fix what the message says, then run preflight again.".to_string(),
        )
    };
    Check::new(
        id,
        CheckStatus::Fail,
        format!("{user} may not create a test_decoding logical slot: {why} ({message}); the way back's DMS task reads PlanetScale through such a slot"),
        vec![user.to_string()],
        fix,
    )
}

fn capacity_check(s: &TargetSettings) -> Check {
    let free_slots = s.max_replication_slots - s.slots_in_use;
    let free_senders = s.max_wal_senders - s.wal_senders_in_use;
    let counts = format!(
        "{} of {} replication slots and {} of {} WAL senders in use",
        s.slots_in_use, s.max_replication_slots, s.wal_senders_in_use, s.max_wal_senders
    );
    if free_slots >= 1 && free_senders >= 1 {
        return Check::pass(
            ids::FALLBACK_TARGET_REPLICATION_CAPACITY,
            format!("{counts} on the target: room for the way back's slot and its stream"),
        );
    }
    let mut objects = Vec::new();
    let mut fix = Vec::new();
    if free_slots < 1 {
        objects.push("max_replication_slots".to_string());
        fix.push(format!("PlanetScale: in {PLANETSCALE_PARAMETERS}, raise max_replication_slots (PlanetScale suggests twice the replicas and subscribers); or drop an unused slot: SELECT pg_drop_replication_slot('<name>');"));
    }
    if free_senders < 1 {
        objects.push("max_wal_senders".to_string());
        fix.push(format!(
            "PlanetScale: in {PLANETSCALE_PARAMETERS}, raise max_wal_senders."
        ));
    }
    Check::new(
        ids::FALLBACK_TARGET_REPLICATION_CAPACITY,
        CheckStatus::Fail,
        format!("{counts} on the target: the way back needs one more of each"),
        objects,
        fix.join("\n"),
    )
}

fn wal_keep_size_check(mb: Option<i64>) -> Check {
    let id = ids::FALLBACK_TARGET_WAL_KEEP_SIZE;
    let bound = format!("{} GB", MIN_SLOT_WAL_KEEP_MB / 1024);
    let fix = format!(
        "PlanetScale: in {PLANETSCALE_PARAMETERS} (Write-ahead log), set max_slot_wal_keep_size to what the target writes while the way back stays armed, at least {bound}, within its free disk.\n\
         Elsewhere: ALTER SYSTEM SET max_slot_wal_keep_size = '{}MB'; SELECT pg_reload_conf();",
        MIN_SLOT_WAL_KEEP_MB
    );
    match mb {
        None => Check::new(
            id,
            CheckStatus::Warn,
            "the target has no max_slot_wal_keep_size (before PostgreSQL 13): the way back's slot keeps WAL without limit until the way back is ended",
            vec!["max_slot_wal_keep_size".to_string()],
            "Watch the target's disk while the way back is armed, and end it (drop the slot) when the migration is final.",
        ),
        Some(-1) => Check::new(
            id,
            CheckStatus::Warn,
            "the target's max_slot_wal_keep_size is -1 (no limit): a way back whose DMS task stops keeps WAL until the target's disk is full",
            vec!["max_slot_wal_keep_size".to_string()],
            fix,
        ),
        Some(mb) if mb < MIN_SLOT_WAL_KEEP_MB => Check::new(
            id,
            CheckStatus::Warn,
            format!("the target's max_slot_wal_keep_size is {mb} MB, below {bound}: the way back's slot is invalidated, and the way back lost, once the reverse task lags by that much WAL"),
            vec!["max_slot_wal_keep_size".to_string()],
            fix,
        ),
        Some(mb) => Check::pass(
            id,
            format!("the target's max_slot_wal_keep_size is {mb} MB: the way back's slot may hold that much WAL before it is invalidated"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TargetSettings {
        TargetSettings {
            wal_level: "logical".into(),
            max_replication_slots: 10,
            slots_in_use: 2,
            max_wal_senders: 10,
            wal_senders_in_use: 2,
            max_slot_wal_keep_size_mb: Some(4096),
            quoted_user: "\"Mig User\"".into(),
        }
    }

    #[test]
    fn wal_level_must_be_logical_and_the_fix_says_planetscale_restarts() {
        assert_eq!(wal_level_check("logical").status, CheckStatus::Pass);
        for level in ["replica", "minimal"] {
            let check = wal_level_check(level);
            assert_eq!(check.status, CheckStatus::Fail, "{check:?}");
            assert_eq!(check.id, "fallback.target_wal_level");
            assert!(check.summary.contains(level), "{check:?}");
            assert!(
                check.fix.contains("restarts the PlanetScale cluster"),
                "{check:?}"
            );
        }
    }

    #[test]
    fn a_refused_slot_names_the_cause_and_its_fix() {
        let refused = |code: SqlState| SlotProbe::Refused {
            code,
            message: "server says no".into(),
        };
        let user = "\"Mig User\"";
        assert_eq!(
            slot_check(&SlotProbe::CreatedAndDropped, user).status,
            CheckStatus::Pass
        );
        let privilege = slot_check(&refused(SqlState::INSUFFICIENT_PRIVILEGE), user);
        assert_eq!(privilege.status, CheckStatus::Fail);
        assert_eq!(privilege.objects, vec![user.to_string()]);
        assert!(privilege
            .fix
            .starts_with("ALTER ROLE \"Mig User\" WITH REPLICATION;"));
        assert!(privilege.summary.contains("server says no"));
        let plugin = slot_check(&refused(SqlState::UNDEFINED_FILE), user);
        assert_eq!(plugin.status, CheckStatus::Fail);
        assert!(
            plugin.summary.contains("test_decoding module"),
            "{plugin:?}"
        );
        let wal = slot_check(&refused(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), user);
        assert!(wal.fix.contains("fallback.target_wal_level"), "{wal:?}");
        let full = slot_check(&refused(SqlState::CONFIGURATION_LIMIT_EXCEEDED), user);
        assert!(full.fix.contains("max_replication_slots"), "{full:?}");
        let slow = slot_check(&refused(SqlState::QUERY_CANCELED), user);
        assert_eq!(slow.status, CheckStatus::Warn, "{slow:?}");
    }

    #[test]
    fn capacity_needs_one_free_slot_and_one_free_sender() {
        assert_eq!(capacity_check(&settings()).status, CheckStatus::Pass);
        let no_slot = capacity_check(&TargetSettings {
            slots_in_use: 10,
            ..settings()
        });
        assert_eq!(no_slot.status, CheckStatus::Fail);
        assert_eq!(no_slot.objects, vec!["max_replication_slots".to_string()]);
        assert!(no_slot.summary.starts_with("10 of 10 replication slots"));
        let no_sender = capacity_check(&TargetSettings {
            wal_senders_in_use: 10,
            ..settings()
        });
        assert_eq!(no_sender.objects, vec!["max_wal_senders".to_string()]);
        let last_ones = capacity_check(&TargetSettings {
            slots_in_use: 9,
            wal_senders_in_use: 9,
            ..settings()
        });
        assert_eq!(last_ones.status, CheckStatus::Pass);
    }

    #[test]
    fn wal_keep_size_warns_when_unbounded_or_below_the_bound() {
        assert_eq!(wal_keep_size_check(Some(4096)).status, CheckStatus::Pass);
        assert_eq!(wal_keep_size_check(Some(65536)).status, CheckStatus::Pass);
        for (value, words) in [
            (Some(-1), "-1 (no limit)"),
            (Some(1024), "1024 MB, below 4 GB"),
            (Some(4095), "4095 MB, below 4 GB"),
            (None, "before PostgreSQL 13"),
        ] {
            let check = wal_keep_size_check(value);
            assert_eq!(check.status, CheckStatus::Warn, "{value:?}: {check:?}");
            assert!(check.summary.contains(words), "{value:?}: {check:?}");
            assert!(!check.fix.is_empty());
        }
    }
}
