//! `dms-migrate sequences sync`: DMS copies rows, not sequence positions, so after the drain every target
//! sequence (identity and serial ones included) must be moved past what the source handed out. One catalog
//! read per side (two on the source with `--rate-window`), then one statement sets every sequence that
//! needs it; the statement itself takes the greater of the wanted and the live value, so a sequence never
//! moves backwards even if the target used it meanwhile.

use dms_core::errors::StepError;
use dms_core::pg::classify_pg_error;
use dms_core::pg::sequences::{self, SequenceState};
use serde::Serialize;

use crate::connection::{self, BothDatabases, Connected, Environment};
use crate::output::{Format, Outcome, Progress};

/// With `--rate-window`, the margin covers this many windows of the observed consumption.
const RATE_FACTOR: i64 = 10;

const LONG_HELP: &str = "How far ahead:
  Each target sequence is set so that its next value is at least the source's last value plus
  --margin steps (a step is one nextval, i.e. the sequence's increment; descending sequences go down).
  With --rate-window S the source is read twice, S seconds apart, and the margin of each sequence is
  max(--margin, 10 x the values it consumed during the window): enough for ten windows of traffic at
  the observed rate, for a sync run while the application still writes to the source.
  A sequence already further ahead on the target is left alone (never moved backwards); a sequence that
  would pass its MAXVALUE/MINVALUE is reported and left alone (never wrapped). A source sequence never
  used needs nothing.

Exit codes:
  0  every target sequence is ahead of the source (or would be, with --dry-run)
  1  a source sequence is missing on the target, unreadable, or would overflow
  2  the command could not run (bad arguments, a database unreachable, a query refused); the reason is
     on stderr

Connections and passwords: see dms-migrate --help.";

#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    #[command(flatten)]
    pub databases: BothDatabases,
    /// Only these schemas (exact names, e.g. Sales); default every non-system schema.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub schemas: Vec<String>,
    /// Steps (nextval calls) each target sequence is set beyond the source's last value.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
    pub margin: i64,
    /// Observe the source's consumption over this many seconds and widen the margin to cover it.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub rate_window: Option<u64>,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A target sequence moved (or, with --dry-run, to be moved).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    pub sequence: String,
    pub schema: String,
    pub name: String,
    pub owned_by: Option<String>,
    pub source_last: i64,
    pub margin: i64,
    pub target_next_before: Option<i64>,
    /// The value `setval(.., true)` is given: the target's next value is this plus the increment.
    pub set_to: i64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    MissingOnTarget,
    Unreadable,
    WouldOverflow,
    DroppedDuringSync,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub sequence: String,
    pub kind: ProblemKind,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub already_ahead: usize,
    pub never_used: usize,
    pub problems: Vec<Problem>,
}

#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    margin: i64,
    rate_window_seconds: Option<u64>,
    changed: &'a [Change],
    already_ahead: usize,
    never_used_on_source: usize,
    problems: &'a [Problem],
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let Connected {
        source_client,
        target_client,
        ..
    } = args.databases.connect(env, &progress).await?;
    connection::refuse_unknown_schemas(&source_client, &args.schemas).await?;
    let first = match args.rate_window {
        Some(seconds) => {
            let first = sequences::read_sequences(&source_client, &args.schemas).await?;
            progress.say(&format!(
                "observing the source's consumption for {seconds} s"
            ));
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            Some(first)
        }
        None => None,
    };
    progress.say("reading sequences on both sides");
    let (source_seqs, target_seqs) = tokio::try_join!(
        sequences::read_sequences(&source_client, &args.schemas),
        sequences::read_sequences(&target_client, &args.schemas)
    )?;
    let mut plan = plan(&source_seqs, first.as_deref(), &target_seqs, args.margin);
    if !args.dry_run && !plan.changes.is_empty() {
        progress.say(&format!("setting {} sequences", plan.changes.len()));
        apply(&target_client, &mut plan).await?;
    }
    match args.format {
        Format::Json => {
            let report = Report {
                dry_run: args.dry_run,
                margin: args.margin,
                rate_window_seconds: args.rate_window,
                changed: &plan.changes,
                already_ahead: plan.already_ahead,
                never_used_on_source: plan.never_used,
                problems: &plan.problems,
            };
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| StepError::config(format!("rendering JSON: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", render_text(&plan, args.dry_run)),
    }
    Ok(if plan.problems.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// What to set, from the source (and its earlier sample with `--rate-window`) and the target. Pure.
pub fn plan(
    source: &[SequenceState],
    earlier: Option<&[SequenceState]>,
    target: &[SequenceState],
    margin: i64,
) -> Plan {
    let key = |s: &SequenceState| (s.schema.clone(), s.name.clone());
    let targets: std::collections::HashMap<_, _> = target.iter().map(|t| (key(t), t)).collect();
    let earlier: std::collections::HashMap<_, _> = earlier
        .unwrap_or_default()
        .iter()
        .map(|s| (key(s), s))
        .collect();
    let mut plan = Plan::default();
    for s in source {
        let problem = |kind, detail: String| Problem {
            sequence: s.qualified(),
            kind,
            detail,
        };
        let Some(t) = targets.get(&key(s)) else {
            plan.problems.push(problem(
                ProblemKind::MissingOnTarget,
                "create it on the target (dms-migrate schema apply) and run sequences sync again"
                    .into(),
            ));
            continue;
        };
        if !s.readable || !t.readable {
            let side = if s.readable { "target" } else { "source" };
            plan.problems.push(problem(
                ProblemKind::Unreadable,
                format!(
                    "the {side} user lacks SELECT on it: GRANT SELECT, USAGE ON SEQUENCE {} TO <user>",
                    s.qualified()
                ),
            ));
            continue;
        }
        let Some(used) = s.used() else {
            plan.never_used += 1;
            continue;
        };
        let step = i128::from(s.increment);
        let consumed = earlier
            .get(&key(s))
            .map(|e| {
                let before = e.used().unwrap_or(e.start - e.increment);
                (i128::from(used) - i128::from(before)) / step
            })
            .unwrap_or(0)
            .max(0);
        let steps = i128::from(margin).max(consumed * i128::from(RATE_FACTOR));
        let wanted = i128::from(used) + steps * step;
        // The value the target's next nextval must exceed (ascending) or undercut (descending).
        let target_last = t
            .next_value()
            .map(|n| i128::from(n) - i128::from(t.increment));
        let ahead = match target_last {
            Some(last) if step > 0 => last >= wanted,
            Some(last) => last <= wanted,
            None => false,
        };
        if ahead {
            plan.already_ahead += 1;
            continue;
        }
        if wanted > i128::from(t.max) || wanted < i128::from(t.min) {
            plan.problems.push(problem(
                ProblemKind::WouldOverflow,
                format!(
                    "source last value {used} plus {steps} steps passes the target's {} {}; widen it \
                     (ALTER SEQUENCE {} AS bigint {} ...) or lower --margin",
                    if step > 0 { "MAXVALUE" } else { "MINVALUE" },
                    if step > 0 { t.max } else { t.min },
                    s.qualified(),
                    if step > 0 { "MAXVALUE" } else { "MINVALUE" },
                ),
            ));
            continue;
        }
        plan.changes.push(Change {
            sequence: s.qualified(),
            schema: s.schema.clone(),
            name: s.name.clone(),
            owned_by: s.owned_by.clone(),
            source_last: used,
            margin: i64::try_from(steps).unwrap_or(i64::MAX),
            target_next_before: t.next_value(),
            // In range: checked against the target's bounds just above.
            set_to: i64::try_from(wanted).unwrap_or(t.max),
        });
    }
    plan
}

/// One statement for every change. `greatest`/`least` with the live value keeps a sequence the target
/// advanced meanwhile where it is; `setval` returns what was set, reported instead of the plan's value.
pub(crate) async fn apply(
    client: &tokio_postgres::Client,
    plan: &mut Plan,
) -> Result<(), StepError> {
    const SQL: &str = r#"
SELECT w.schema, w.name,
       setval(c.oid,
              CASE WHEN s.seqincrement > 0 THEN greatest(w.wanted, pg_sequence_last_value(c.oid))
                   ELSE least(w.wanted, pg_sequence_last_value(c.oid)) END,
              true) AS set_to
FROM unnest($1::text[], $2::text[], $3::int8[]) AS w(schema, name, wanted)
JOIN pg_namespace n ON n.nspname = w.schema
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name AND c.relkind = 'S'
JOIN pg_sequence s ON s.seqrelid = c.oid"#;
    let schemas: Vec<&str> = plan.changes.iter().map(|c| c.schema.as_str()).collect();
    let names: Vec<&str> = plan.changes.iter().map(|c| c.name.as_str()).collect();
    let wanted: Vec<i64> = plan.changes.iter().map(|c| c.set_to).collect();
    let rows = client
        .query(SQL, &[&schemas, &names, &wanted])
        .await
        .map_err(|e| classify_pg_error("setting target sequences", &e))?;
    let set: std::collections::HashMap<(String, String), i64> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let mut dropped = Vec::new();
    plan.changes.retain_mut(|c| {
        match set.get(&(c.schema.clone(), c.name.clone())) {
            Some(&value) => c.set_to = value,
            None => dropped.push(Problem {
                sequence: c.sequence.clone(),
                kind: ProblemKind::DroppedDuringSync,
                detail: "dropped from the target while syncing; recreate it and run again".into(),
            }),
        }
        set.contains_key(&(c.schema.clone(), c.name.clone()))
    });
    plan.problems.extend(dropped);
    Ok(())
}

fn render_text(plan: &Plan, dry_run: bool) -> String {
    let verb = if dry_run { "would set" } else { "set" };
    let mut out = String::new();
    if !plan.changes.is_empty() {
        out.push_str(&format!(
            "{} ({}):\n",
            if dry_run { "WOULD CHANGE" } else { "CHANGED" },
            plan.changes.len()
        ));
        for c in &plan.changes {
            out.push_str(&format!(
                "  {}  source last {}; target next {} -> last {} (margin {})\n",
                c.sequence,
                c.source_last,
                c.target_next_before
                    .map_or_else(|| "exhausted".to_string(), |v| v.to_string()),
                c.set_to,
                c.margin
            ));
        }
    }
    if !plan.problems.is_empty() {
        out.push_str(&format!("PROBLEMS ({}):\n", plan.problems.len()));
        for p in &plan.problems {
            out.push_str(&format!(
                "  {}  {}: {}\n",
                p.sequence,
                serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                p.detail
            ));
        }
    }
    out.push_str(&format!(
        "{} {verb}, {} already ahead, {} never used on the source, {} problems\n",
        plan.changes.len(),
        plan.already_ahead,
        plan.never_used,
        plan.problems.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(name: &str, last: Option<i64>, increment: i64) -> SequenceState {
        SequenceState {
            schema: "public".into(),
            name: name.into(),
            last_value: last,
            is_called: last.is_some(),
            pending: last.is_none().then_some(if increment > 0 { 1 } else { -1 }),
            increment,
            min: if increment > 0 { 1 } else { -1000 },
            max: if increment > 0 { 1000 } else { -1 },
            start: if increment > 0 { 1 } else { -1 },
            cycle: false,
            readable: true,
            owned_by: None,
        }
    }

    #[test]
    fn plan_moves_forward_only_and_respects_direction_and_bounds() {
        let source = vec![
            seq("up", Some(100), 1),
            seq("down", Some(-100), -1),
            seq("ahead", Some(100), 1),
            seq("big", Some(995), 1),
            seq("idle", None, 1),
            seq("gone", Some(1), 1),
        ];
        let target = vec![
            seq("up", None, 1),
            seq("down", Some(-5), -1),
            seq("ahead", Some(500), 1),
            seq("big", None, 1),
            seq("idle", None, 1),
        ];
        let plan = plan(&source, None, &target, 10);
        let set: Vec<(&str, i64)> = plan
            .changes
            .iter()
            .map(|c| (c.name.as_str(), c.set_to))
            .collect();
        assert_eq!(set, vec![("up", 110), ("down", -110)]);
        assert_eq!((plan.already_ahead, plan.never_used), (1, 1));
        let problems: Vec<(&str, ProblemKind)> = plan
            .problems
            .iter()
            .map(|p| (p.sequence.as_str(), p.kind))
            .collect();
        assert_eq!(
            problems,
            vec![
                ("public.big", ProblemKind::WouldOverflow),
                ("public.gone", ProblemKind::MissingOnTarget)
            ]
        );
    }

    #[test]
    fn rate_window_widens_the_margin_by_the_factor() {
        let earlier = vec![seq("busy", Some(100), 1), seq("quiet", Some(50), 1)];
        let source = vec![seq("busy", Some(150), 1), seq("quiet", Some(50), 1)];
        let target = vec![seq("busy", None, 1), seq("quiet", None, 1)];
        let mut plan = plan(&source, Some(&earlier), &target, 5);
        plan.changes.sort_by(|a, b| a.name.cmp(&b.name));
        let margins: Vec<(&str, i64, i64)> = plan
            .changes
            .iter()
            .map(|c| (c.name.as_str(), c.margin, c.set_to))
            .collect();
        assert_eq!(
            margins,
            vec![
                ("busy", 50 * RATE_FACTOR, 150 + 50 * RATE_FACTOR),
                ("quiet", 5, 55)
            ]
        );
    }
}
