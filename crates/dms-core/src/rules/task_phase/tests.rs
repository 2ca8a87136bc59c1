use super::*;
use crate::rules::dms_model::{TableStat, TaskInfo, TaskStats};
use crate::rules::state::{Monitor, Options};

const NOW: i64 = 1_000_000;

fn monitor() -> Monitor {
    Monitor {
        deadline_epoch_seconds: NOW + 72 * 3600,
        polls: 0,
        consecutive_ready_polls: 0,
        full_load_announced: false,
        next_poll_seconds: 60,
        recovering_since_epoch_seconds: None,
        recovery_announced: false,
    }
}

fn options() -> Options {
    Options {
        poll_interval_seconds: 60,
        max_polls: 2500,
        cdc_latency_target_seconds: 5,
        ready_after_consecutive_polls: 3,
        ..Options::default()
    }
}

fn table(name: &str, state: &str) -> TableStat {
    TableStat {
        schema: "public".into(),
        table: name.into(),
        state: state.into(),
        full_load_rows: 10,
        ..TableStat::default()
    }
}

fn task(status: &str, stop: Option<&str>, migration: &str) -> TaskInfo {
    TaskInfo {
        arn: "arn:aws:dms:us-east-1:123456789012:task:T".into(),
        status: status.into(),
        stop_reason: stop.map(str::to_string),
        migration_type: migration.into(),
        ..TaskInfo::default()
    }
}

const GOOD: CdcLatency = CdcLatency {
    source_seconds: Some(1.0),
    target_seconds: Some(2.0),
};

fn run(
    task: &TaskInfo,
    tables: &[TableStat],
    latency: CdcLatency,
    monitor: &Monitor,
) -> Assessment {
    assess(
        &Reading {
            task,
            tables,
            latency,
        },
        monitor,
        &options(),
        NOW,
    )
}

/// Proves each `ALL` lists every variant: adding a variant breaks these matches at compile time, and
/// leaving it out of `ALL` fails the assertion.
#[test]
fn every_variant_is_listed() {
    fn status_index(s: TaskStatus) -> usize {
        match s {
            TaskStatus::Creating => 0,
            TaskStatus::Ready => 1,
            TaskStatus::Starting => 2,
            TaskStatus::Running => 3,
            TaskStatus::Stopping => 4,
            TaskStatus::Stopped => 5,
            TaskStatus::Failed => 6,
            TaskStatus::FailedMove => 7,
            TaskStatus::Modifying => 8,
            TaskStatus::Moving => 9,
            TaskStatus::Deleting => 10,
            TaskStatus::Testing => 11,
        }
    }
    fn reason_index(r: StopReason) -> usize {
        match r {
            StopReason::Normal => 0,
            StopReason::RecoverableError => 1,
            StopReason::FatalError => 2,
            StopReason::FullLoadOnlyFinished => 3,
            StopReason::StoppedAfterFullLoad => 4,
            StopReason::StoppedAfterCachedEvents => 5,
            StopReason::ExpressLicenseLimitsReached => 6,
            StopReason::StoppedAfterDdlApply => 7,
            StopReason::StoppedDueToLowMemory => 8,
            StopReason::StoppedDueToLowDisk => 9,
            StopReason::StoppedAtServerTime => 10,
            StopReason::StoppedAtCommitTime => 11,
            StopReason::ReconfigurationRestart => 12,
            StopReason::RecycleTask => 13,
        }
    }
    let mut statuses: Vec<_> = TaskStatus::ALL.map(status_index).to_vec();
    statuses.sort();
    assert_eq!(statuses, (0..12).collect::<Vec<_>>());
    let mut reasons: Vec<_> = StopReason::ALL.map(reason_index).to_vec();
    reasons.sort();
    assert_eq!(reasons, (0..14).collect::<Vec<_>>());
    for s in TaskStatus::ALL {
        assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
    }
    for r in StopReason::ALL {
        assert_eq!(StopReason::from_dms(&r.dms_text()), Some(r));
        assert_eq!(StopReason::from_dms(r.as_str()), Some(r));
    }
    for m in MigrationType::ALL {
        assert_eq!(MigrationType::parse(m.as_str()), Some(m));
    }
    for p in Phase::ALL {
        assert!(!p.as_str().is_empty());
    }
}

/// What the rules must say, written independently of them: status × stop reason × migration type, with
/// the full load finished or not. `None` for an unknown value.
fn expected(
    status: Option<TaskStatus>,
    stop: Option<Option<StopReason>>,
    migration: Option<MigrationType>,
    load_finished: bool,
) -> Phase {
    use MigrationType as M;
    use StopReason as R;
    use TaskStatus as S;
    let (Some(status), Some(migration)) = (status, migration) else {
        return Phase::Failed;
    };
    let transient = match migration {
        M::FullLoad => Phase::Loading,
        M::Cdc => Phase::CatchingUp,
        M::FullLoadAndCdc if load_finished => Phase::CatchingUp,
        M::FullLoadAndCdc => Phase::Loading,
    };
    match status {
        S::Failed | S::FailedMove | S::Deleting => Phase::Failed,
        S::Creating
        | S::Ready
        | S::Starting
        | S::Stopping
        | S::Modifying
        | S::Moving
        | S::Testing => transient,
        S::Running => match migration {
            M::FullLoad => Phase::Loading,
            M::Cdc => Phase::CatchingUp,
            M::FullLoadAndCdc if load_finished => Phase::FullLoadComplete,
            M::FullLoadAndCdc => Phase::Loading,
        },
        S::Stopped => match (stop, migration) {
            (None, _) | (Some(None), _) => Phase::Failed,
            (Some(Some(R::RecycleTask | R::ReconfigurationRestart)), _) => transient,
            // DMS restarts the task itself: announced once (a fresh monitor has not announced it).
            (Some(Some(R::RecoverableError)), _) => Phase::Recovering,
            (
                Some(Some(
                    R::FullLoadOnlyFinished | R::StoppedAfterFullLoad | R::StoppedAfterCachedEvents,
                )),
                M::FullLoad,
            ) if load_finished => Phase::Succeeded,
            (Some(Some(R::Normal)), M::FullLoad) if load_finished => Phase::Succeeded,
            _ => Phase::Failed,
        },
    }
}

#[test]
fn every_status_stop_reason_and_migration_type_maps_to_the_expected_phase() {
    let statuses: Vec<(String, Option<TaskStatus>)> = TaskStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), Some(*s)))
        .chain([("paused-for-lunch".to_string(), None)])
        .collect();
    // None: no stop reason; Some(None): a value DMS may add one day.
    let stops: Vec<(Option<String>, Option<Option<StopReason>>)> = std::iter::once((None, None))
        .chain(
            StopReason::ALL
                .iter()
                .map(|r| (Some(r.dms_text()), Some(Some(*r)))),
        )
        .chain([(Some("Stop Reason SOMETHING_NEW".to_string()), Some(None))])
        .collect();
    let migrations: Vec<(String, Option<MigrationType>)> = MigrationType::ALL
        .iter()
        .map(|m| (m.as_str().to_string(), Some(*m)))
        .chain([("full-load-and-more".to_string(), None)])
        .collect();
    let finished = vec![table("a", TABLE_COMPLETED), table("b", TABLE_COMPLETED)];
    let loading = vec![table("a", TABLE_COMPLETED), table("b", "Full load")];
    let mut checked = 0;
    for (status_text, status) in &statuses {
        for (stop_text, stop) in &stops {
            for (migration_text, migration) in &migrations {
                for (load_finished, tables) in [(true, &finished), (false, &loading)] {
                    let t = task(status_text, stop_text.as_deref(), migration_text);
                    let out = run(&t, tables, CdcLatency::default(), &monitor());
                    let want = expected(*status, *stop, *migration, load_finished);
                    assert_eq!(
                        out.phase, want,
                        "status {status_text}, stop {stop_text:?}, migration {migration_text}, load finished {load_finished}: {:?}",
                        out.progress.reason
                    );
                    assert_eq!(out.progress.phase, want);
                    let reason = out.progress.reason.clone().unwrap_or_default();
                    assert!(!reason.is_empty());
                    if status.is_none() {
                        assert!(reason.contains(status_text.as_str()), "{reason}");
                    } else if migration.is_none() {
                        assert!(reason.contains(migration_text.as_str()), "{reason}");
                    } else if *status == Some(TaskStatus::Stopped) && *stop == Some(None) {
                        assert!(reason.contains("SOMETHING_NEW"), "{reason}");
                    }
                    if !want.ends_monitoring() {
                        assert!(out.monitor.next_poll_seconds >= 60);
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 13 * 16 * 4 * 2);
}

#[test]
fn stop_reasons_that_fail_say_why() {
    for (reason, words) in [
        (StopReason::StoppedDueToLowMemory, "out of memory"),
        (StopReason::StoppedDueToLowDisk, "out of storage"),
        (StopReason::FatalError, "fatal"),
        (StopReason::Normal, "was stopped"),
    ] {
        let t = task("stopped", Some(&reason.dms_text()), "full-load-and-cdc");
        let out = run(
            &t,
            &[table("a", "Full load")],
            CdcLatency::default(),
            &monitor(),
        );
        assert_eq!(out.phase, Phase::Failed);
        let text = out.progress.reason.unwrap();
        assert!(
            text.contains(words) && text.contains(reason.as_str()),
            "{text}"
        );
        assert_eq!(
            out.progress.stop_reason.as_deref(),
            Some(reason.dms_text().as_str())
        );
    }
}

#[test]
fn a_failed_task_carries_dms_message() {
    let mut t = task(
        "failed",
        Some("Stop Reason FATAL_ERROR"),
        "full-load-and-cdc",
    );
    t.last_failure_message =
        Some("Last Error ODBC general error. Task error notification received".into());
    let out = run(&t, &[], CdcLatency::default(), &monitor());
    assert_eq!(out.phase, Phase::Failed);
    assert_eq!(
        out.progress.last_failure_message.as_deref(),
        t.last_failure_message.as_deref()
    );
    assert!(out.progress.reason.unwrap().contains("FATAL_ERROR"));
}

#[test]
fn full_load_and_cdc_announces_the_load_then_needs_consecutive_ready_polls() {
    let loading = [table("a", TABLE_COMPLETED), table("b", "Full load")];
    let done = [table("a", TABLE_COMPLETED), table("b", TABLE_COMPLETED)];
    let t = task("running", None, "full-load-and-cdc");
    let m = monitor();

    let out = run(&t, &loading, CdcLatency::default(), &m);
    assert_eq!(out.phase, Phase::Loading);
    assert!(!out.monitor.full_load_announced);
    assert_eq!(out.monitor.polls, 1);

    // Already caught up: full-load-complete is still reported first.
    let out = run(&t, &done, GOOD, &out.monitor);
    assert_eq!(out.phase, Phase::FullLoadComplete);
    assert!(out.monitor.full_load_announced);
    assert_eq!(out.monitor.consecutive_ready_polls, 1);

    let out = run(&t, &done, GOOD, &out.monitor);
    assert_eq!(out.phase, Phase::CatchingUp);
    assert_eq!(out.monitor.consecutive_ready_polls, 2);
    assert!(out.progress.reason.unwrap().contains("2 of 3"));

    // One slow poll starts the streak over.
    let slow = CdcLatency {
        source_seconds: Some(1.0),
        target_seconds: Some(9.0),
    };
    let out = run(&t, &done, slow, &out.monitor);
    assert_eq!(out.phase, Phase::CatchingUp);
    assert_eq!(out.monitor.consecutive_ready_polls, 0);

    let mut m = out.monitor;
    for _ in 0..2 {
        let out = run(&t, &done, GOOD, &m);
        assert_eq!(out.phase, Phase::CatchingUp);
        m = out.monitor;
    }
    let out = run(&t, &done, GOOD, &m);
    assert_eq!(out.phase, Phase::ReadyForCutover);
    assert_eq!(out.progress.cdc_latency_target_seconds, Some(2.0));
    assert!(out.progress.reason.unwrap().contains("3 consecutive polls"));
}

#[test]
fn latency_needs_both_metrics_and_must_be_under_the_target() {
    let t = task("running", None, "cdc");
    let mut m = monitor();
    m.consecutive_ready_polls = 2;
    for latency in [
        CdcLatency::default(),
        CdcLatency {
            source_seconds: Some(0.0),
            target_seconds: None,
        },
        CdcLatency {
            source_seconds: None,
            target_seconds: Some(0.0),
        },
        CdcLatency {
            source_seconds: Some(5.0),
            target_seconds: Some(0.0),
        },
    ] {
        let out = run(&t, &[], latency, &m);
        assert_eq!(out.phase, Phase::CatchingUp, "{latency:?}");
        assert_eq!(out.monitor.consecutive_ready_polls, 0, "{latency:?}");
    }
    let out = run(&t, &[], GOOD, &m);
    assert_eq!(out.phase, Phase::ReadyForCutover);
}

#[test]
fn a_table_error_fails_naming_the_table_even_when_caught_up() {
    let t = task("running", None, "cdc");
    let mut bad = table("Orders", TABLE_ERROR);
    bad.schema = "sales".into();
    let mut warned = table("items", TABLE_COMPLETED);
    warned.validation_state = Some("Mismatched records".into());
    let mut m = monitor();
    m.consecutive_ready_polls = 10;
    let out = run(&t, &[bad, warned, table("ok", TABLE_COMPLETED)], GOOD, &m);
    assert_eq!(out.phase, Phase::Failed);
    assert_eq!(
        out.progress.error_tables,
        vec!["sales.\"Orders\"".to_string()]
    );
    assert_eq!(out.progress.tables_errored, 1);
    assert!(out.progress.reason.unwrap().contains("sales.\"Orders\""));
    assert_eq!(
        out.progress.warning_tables,
        vec!["public.items".to_string()]
    );
    assert_eq!(out.progress.warning_tables_total, 1);

    // A count from ReplicationTaskStats alone also fails.
    let mut t = task("running", None, "full-load-and-cdc");
    t.stats = Some(TaskStats {
        tables_errored: 2,
        ..TaskStats::default()
    });
    let out = run(&t, &[], CdcLatency::default(), &monitor());
    assert_eq!(out.phase, Phase::Failed);
    assert_eq!(out.progress.tables_errored, 2);
}

#[test]
fn warnings_alone_do_not_block_readiness() {
    let t = task("running", None, "cdc");
    let mut warned = table("nopk", TABLE_COMPLETED);
    warned.validation_state = Some("No primary key".into());
    let mut m = monitor();
    m.consecutive_ready_polls = 2;
    let out = run(&t, &[warned], GOOD, &m);
    assert_eq!(out.phase, Phase::ReadyForCutover);
    assert_eq!(out.progress.warning_tables, vec!["public.nopk".to_string()]);
}

#[test]
fn full_load_only_succeeds_only_when_every_table_completed() {
    let t = task(
        "stopped",
        Some("Stop Reason FULL_LOAD_ONLY_FINISHED"),
        "full-load",
    );
    let out = run(
        &t,
        &[table("a", TABLE_COMPLETED)],
        CdcLatency::default(),
        &monitor(),
    );
    assert_eq!(out.phase, Phase::Succeeded);
    assert_eq!(out.progress.full_load_rows, Some(10));
    let out = run(
        &t,
        &[table("a", TABLE_COMPLETED), table("b", "Table cancelled")],
        CdcLatency::default(),
        &monitor(),
    );
    assert_eq!(out.phase, Phase::Failed);
    assert!(out.progress.reason.unwrap().contains("public.b"));
    // Running at 100% is still loading: the task ends `stopped`, and only that is success.
    let mut running = task("running", None, "full-load");
    running.stats = Some(TaskStats {
        full_load_progress_percent: 100,
        tables_loaded: 1,
        full_load_finish_epoch_seconds: Some(1.0),
        ..TaskStats::default()
    });
    let out = run(
        &running,
        &[table("a", TABLE_COMPLETED)],
        CdcLatency::default(),
        &monitor(),
    );
    assert_eq!(out.phase, Phase::Loading);
    assert_eq!(out.progress.full_load_progress_percent, Some(100));
}

#[test]
fn next_poll_spreads_the_remaining_polls_over_the_remaining_time() {
    let t = task("running", None, "cdc");
    let mut m = monitor();
    // 72 h left, 2,499 polls left after this one: ceil(259200 / 2499) = 104 s > 60 s.
    let out = run(&t, &[], CdcLatency::default(), &m);
    assert_eq!(out.monitor.next_poll_seconds, 104);
    // Plenty of polls: the interval wins.
    m.deadline_epoch_seconds = NOW + 600;
    let out = run(&t, &[], CdcLatency::default(), &m);
    assert_eq!(out.monitor.next_poll_seconds, 60);
}

#[test]
fn budgets_end_monitoring_clearly_but_a_final_reading_wins() {
    let t = task("running", None, "cdc");
    let mut m = monitor();
    m.polls = 2499;
    let out = run(&t, &[], CdcLatency::default(), &m);
    assert_eq!(out.phase, Phase::MonitoringEnded);
    assert_eq!(out.monitor.polls, 2500);
    let reason = out.progress.reason.unwrap();
    assert!(
        reason.contains("maxPolls") && reason.contains("catching-up"),
        "{reason}"
    );

    let mut m = monitor();
    m.deadline_epoch_seconds = NOW;
    let out = run(&t, &[], CdcLatency::default(), &m);
    assert_eq!(out.phase, Phase::MonitoringEnded);
    assert!(out.progress.reason.unwrap().contains("maxMonitorHours"));

    // The last allowed poll that sees readiness reports it.
    let mut m = monitor();
    m.polls = 2499;
    m.consecutive_ready_polls = 2;
    let out = run(&t, &[], GOOD, &m);
    assert_eq!(out.phase, Phase::ReadyForCutover);
}

#[test]
fn transient_restarts_keep_polling_and_reset_the_streak() {
    let t = task("stopped", Some("Stop Reason RECYCLE_TASK"), "cdc");
    let mut m = monitor();
    m.consecutive_ready_polls = 2;
    let out = run(&t, &[], GOOD, &m);
    assert_eq!(out.phase, Phase::CatchingUp);
    assert_eq!(out.monitor.consecutive_ready_polls, 0);
    assert!(out.progress.reason.unwrap().contains("RECYCLE_TASK"));
}

fn recoverable_stop(message: &str) -> TaskInfo {
    let mut t = task(
        "stopped",
        Some(&StopReason::RecoverableError.dms_text()),
        "full-load-and-cdc",
    );
    t.last_failure_message = Some(message.into());
    t
}

fn at(task: &TaskInfo, monitor: &Monitor, now: i64) -> Assessment {
    assess(
        &Reading {
            task,
            tables: &[table("a", TABLE_COMPLETED)],
            latency: CdcLatency::default(),
        },
        monitor,
        &options(),
        now,
    )
}

#[test]
fn a_recoverable_stop_is_announced_once_then_watched_then_fails_with_dms_message_past_the_bound() {
    let message = "Error in replication: connection to the source was lost";
    let t = recoverable_stop(message);
    let first = at(&t, &monitor(), NOW);
    assert_eq!(first.phase, Phase::Recovering);
    assert_eq!(first.monitor.recovering_since_epoch_seconds, Some(NOW));
    assert!(first.monitor.recovery_announced);
    let reason = first.progress.reason.clone().unwrap();
    assert!(
        reason.contains(message) && reason.contains("restarts it by itself"),
        "{reason}"
    );

    // Still stopped a while later: no second announcement, monitoring goes on.
    let bound =
        i64::try_from(crate::rules::recoverable_errors::STACK_SETTINGS.give_up_after_seconds())
            .unwrap();
    let later = at(&t, &first.monitor, NOW + bound);
    assert_eq!(
        later.phase,
        Phase::CatchingUp,
        "{:?}",
        later.progress.reason
    );
    assert_eq!(later.monitor.recovering_since_epoch_seconds, Some(NOW));

    // Past the bound: DMS has given up; the reason carries DMS's message and no reload advice.
    let given_up = at(&t, &later.monitor, NOW + bound + 1);
    assert_eq!(given_up.phase, Phase::Failed);
    let reason = given_up.progress.reason.unwrap();
    assert!(
        reason.contains(message) && reason.contains("given up"),
        "{reason}"
    );
    assert!(!reason.contains("reload"), "{reason}");
    assert_eq!(
        given_up.progress.last_failure_message.as_deref(),
        Some(message)
    );
}

#[test]
fn a_restarted_task_ends_the_recovery_and_a_later_one_is_timed_afresh() {
    let t = recoverable_stop("lost");
    let first = at(&t, &monitor(), NOW);
    let running = task("running", None, "full-load-and-cdc");
    let back = at(&running, &first.monitor, NOW + 60);
    assert_ne!(back.phase, Phase::Recovering);
    assert_eq!(back.monitor.recovering_since_epoch_seconds, None);
    let again = at(&t, &back.monitor, NOW + 10_000);
    assert_eq!(
        again.phase,
        Phase::CatchingUp,
        "announced once per execution"
    );
    assert_eq!(
        again.monitor.recovering_since_epoch_seconds,
        Some(NOW + 10_000)
    );
}

#[test]
fn a_status_or_migration_type_dms_does_not_list_stops_monitoring_naming_it() {
    for (status, migration, named) in [
        ("paused", "full-load-and-cdc", "task status `paused`"),
        ("", "cdc", "task status ``"),
        ("running", "cdc-and-more", "migration type `cdc-and-more`"),
    ] {
        let result = run(&task(status, None, migration), &[], GOOD, &monitor());
        assert_eq!(result.progress.phase, Phase::Failed, "{status}/{migration}");
        let reason = result.progress.reason.unwrap_or_default();
        assert!(reason.contains(named), "{reason}");
        assert_eq!(
            result.progress.status.as_str(),
            status,
            "kept as DMS spelled it"
        );
    }
}
