//! Sequences as both sides see them (identity and serial ones included): one catalog read per side, and the
//! pure comparison `cutover-check`, `sequences sync` and `verify` share ("is every target sequence ahead of
//! the source?").

use serde::Serialize;

use crate::errors::StepError;
use crate::pg::classify_pg_error;
use crate::rules::sql_ident::quote_if_needed;

/// One sequence's state. `last_value` is the value last handed out (None: never called since its creation
/// or last `setval(..., false)`, or not readable); `pending` is what the next `nextval` returns when the
/// sequence was not called (the start, or the value a `setval(..., false)` left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceState {
    pub schema: String,
    pub name: String,
    pub last_value: Option<i64>,
    pub is_called: bool,
    pub pending: Option<i64>,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub start: i64,
    pub cycle: bool,
    /// False when the connected user lacks SELECT/USAGE on it: its values are then unknown (None).
    pub readable: bool,
    /// `schema.table.column` for identity and serial sequences.
    pub owned_by: Option<String>,
}

impl SequenceState {
    /// `schema.name`, quoted where PostgreSQL needs it.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_if_needed(&self.schema),
            quote_if_needed(&self.name)
        )
    }

    /// The value the next `nextval` returns; None when unreadable or when it would pass min/max.
    pub fn next_value(&self) -> Option<i64> {
        if !self.is_called {
            return self.pending;
        }
        let next = self.last_value?.checked_add(self.increment)?;
        (self.min..=self.max).contains(&next).then_some(next)
    }

    /// The last value the sequence is known to have handed out: `last_value` when called; for a sequence
    /// not called but moved off its start (`setval(.., false)`), the value before its pending one.
    pub fn used(&self) -> Option<i64> {
        if self.is_called {
            return self.last_value;
        }
        self.pending
            .filter(|&p| p != self.start)
            .and_then(|p| p.checked_sub(self.increment))
    }

    pub fn descending(&self) -> bool {
        self.increment < 0
    }
}

/// Every sequence of the given schemas (every non-system schema when `schemas` is empty), in one query.
/// Values of called sequences come from `pg_sequence_last_value`; only never-called ones are read from the
/// relation itself, since the catalog does not hold their pending value.
pub async fn read_sequences(
    client: &tokio_postgres::Client,
    schemas: &[String],
) -> Result<Vec<SequenceState>, StepError> {
    const SQL: &str = r#"
WITH seq AS (
  SELECT c.oid, n.nspname, c.relname, s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcycle,
         has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable
  FROM pg_sequence s
  JOIN pg_class c ON c.oid = s.seqrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
    AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[]))
), called AS (
  SELECT seq.*, CASE WHEN readable THEN pg_sequence_last_value(oid) END AS last_value FROM seq
)
SELECT nspname, relname, last_value, seqincrement, seqmin, seqmax, seqstart, seqcycle, readable,
       CASE WHEN readable AND last_value IS NULL THEN
         (xpath('/row/last_value/text()',
                query_to_xml(format('SELECT last_value FROM %s', oid::regclass), false, true, '')))[1]::text::bigint
       END AS pending,
       (SELECT format('%I.%I.%I', tn.nspname, tc.relname, a.attname)
          FROM pg_depend d
          JOIN pg_class tc ON tc.oid = d.refobjid
          JOIN pg_namespace tn ON tn.oid = tc.relnamespace
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = called.oid
           AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
         LIMIT 1) AS owned_by
FROM called
ORDER BY nspname, relname"#;
    let rows = client
        .query(SQL, &[&schemas])
        .await
        .map_err(|e| classify_pg_error("reading sequences", &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let last_value: Option<i64> = r.get("last_value");
            SequenceState {
                schema: r.get("nspname"),
                name: r.get("relname"),
                is_called: last_value.is_some(),
                last_value,
                pending: r.get("pending"),
                increment: r.get("seqincrement"),
                min: r.get("seqmin"),
                max: r.get("seqmax"),
                start: r.get("seqstart"),
                cycle: r.get("seqcycle"),
                readable: r.get("readable"),
                owned_by: r.get("owned_by"),
            }
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BehindReason {
    /// The source has it, the target does not.
    Missing,
    /// The target's next value would repeat a value the source already handed out.
    NotAhead,
    /// Either side's values cannot be read (privileges), so "ahead" cannot be shown.
    Unreadable,
}

/// A target sequence that is not safely ahead of its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Behind {
    pub schema: String,
    pub name: String,
    pub reason: BehindReason,
    /// The source's last handed-out value (None: never called there).
    pub source_last: Option<i64>,
    /// What the target hands out next (None: missing, unreadable or exhausted).
    pub target_next: Option<i64>,
}

impl Behind {
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_if_needed(&self.schema),
            quote_if_needed(&self.name)
        )
    }
}

/// Source sequences whose target counterpart (same schema and name) is missing or would hand out a value
/// the source already used. A source sequence never called is satisfied by any target that has it.
pub fn behind(source: &[SequenceState], target: &[SequenceState]) -> Vec<Behind> {
    let by_name: std::collections::HashMap<(&str, &str), &SequenceState> = target
        .iter()
        .map(|t| ((t.schema.as_str(), t.name.as_str()), t))
        .collect();
    source
        .iter()
        .filter_map(|s| {
            let t = by_name.get(&(s.schema.as_str(), s.name.as_str()));
            let reason = match t {
                None => Some(BehindReason::Missing),
                Some(t) if !s.readable || !t.readable => Some(BehindReason::Unreadable),
                Some(t) => match (s.used(), t.next_value()) {
                    (None, _) => None,
                    (Some(_), None) => Some(BehindReason::NotAhead),
                    (Some(used), Some(next)) => {
                        let ahead = if t.descending() {
                            next < used
                        } else {
                            next > used
                        };
                        (!ahead).then_some(BehindReason::NotAhead)
                    }
                },
            }?;
            Some(Behind {
                schema: s.schema.clone(),
                name: s.name.clone(),
                reason,
                source_last: s.used(),
                target_next: t.and_then(|t| t.next_value()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(name: &str, last: Option<i64>, increment: i64) -> SequenceState {
        SequenceState {
            schema: "Sales".into(),
            name: name.into(),
            last_value: last,
            is_called: last.is_some(),
            pending: if last.is_none() {
                Some(if increment > 0 { 1 } else { -1 })
            } else {
                None
            },
            increment,
            min: if increment > 0 { 1 } else { i64::MIN },
            max: if increment > 0 { i64::MAX } else { -1 },
            start: if increment > 0 { 1 } else { -1 },
            cycle: false,
            readable: true,
            owned_by: None,
        }
    }

    fn names(b: &[Behind]) -> Vec<(String, BehindReason)> {
        b.iter().map(|b| (b.qualified(), b.reason)).collect()
    }

    #[test]
    fn missing_and_equal_are_behind_ahead_and_never_called_are_not() {
        let source = vec![
            seq("a", Some(10), 1),
            seq("b", Some(10), 1),
            seq("c", Some(10), 1),
            seq("d", None, 1),
            seq("gone", Some(1), 1),
        ];
        let target = vec![
            seq("a", Some(10), 1), // next 11 > 10: ahead
            seq("b", Some(9), 1),  // next 10 repeats 10
            seq("c", None, 1),     // never called: next 1
            seq("d", None, 1),
        ];
        assert_eq!(
            names(&behind(&source, &target)),
            vec![
                ("\"Sales\".b".to_string(), BehindReason::NotAhead),
                ("\"Sales\".c".to_string(), BehindReason::NotAhead),
                ("\"Sales\".gone".to_string(), BehindReason::Missing),
            ]
        );
    }

    #[test]
    fn descending_sequences_are_ahead_when_lower() {
        let source = vec![seq("down", Some(-50), -1), seq("down2", Some(-50), -1)];
        let target = vec![seq("down", Some(-50), -1), seq("down2", Some(-49), -1)];
        // down: next -51 < -50 is ahead; down2: next -50 repeats.
        assert_eq!(
            names(&behind(&source, &target)),
            vec![("\"Sales\".down2".to_string(), BehindReason::NotAhead)]
        );
    }

    #[test]
    fn exhausted_target_and_unreadable_side_are_reported() {
        let mut exhausted = seq("exhausted", Some(i64::MAX), 1);
        exhausted.max = i64::MAX;
        let mut hidden = seq("hidden", None, 1);
        hidden.readable = false;
        hidden.pending = None;
        let source = vec![seq("exhausted", Some(5), 1), seq("hidden", Some(5), 1)];
        assert_eq!(
            names(&behind(&source, &[exhausted, hidden])),
            vec![
                ("\"Sales\".exhausted".to_string(), BehindReason::NotAhead),
                ("\"Sales\".hidden".to_string(), BehindReason::Unreadable),
            ]
        );
    }
}
