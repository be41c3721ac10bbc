//! What a report says, as plain text: the cells of its tables and the
//! phrases of its header, computed once for both renderers. The Markdown
//! and HTML renderers only escape these texts and mark them up, so the two
//! formats cannot drift apart in what they tell the reader.

use crate::report::{
    AttemptEnd, Decision, DecisionKind, Report, RollbackReport, RunStatus, Session, StepReport,
    first_line, who,
};
use crate::time::{between, format_datetime, format_duration, format_time_of_day};
use serde_json::Value;

/// The note above the outputs section.
pub(crate) const OUTPUTS_NOTE: &str = "Trimmed to what is worth reading: the last lines of command output, the first lines of a response body; the journal has them in full.";

/// When and by whom an engine session started: `DATE TIME UTC by user@host`,
/// with the resume's note in brackets.
pub(crate) fn session(session: &Session) -> String {
    let by = who(session.user.as_deref(), session.host.as_deref());
    let mut text = format!("{} by {by}", format_datetime(&session.started_at));
    if let Some(note) = &session.note {
        text.push_str(&format!(" ({note})"));
    }
    text
}

/// The header label of the run's last moment.
pub(crate) fn end_label(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "Last event",
        RunStatus::Stopped => "Engine stopped",
        _ => "Ended",
    }
}

/// A param's value as shown (strings without their quotes).
pub(crate) fn param_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The footer's account of the journal: `N events`, and its torn line.
pub(crate) fn journal_summary(r: &Report) -> String {
    match &r.journal.torn_line {
        Some(t) => format!(
            "Journal: {} events, then an incomplete line {}.",
            r.journal.events, t.line
        ),
        None => format!("Journal: {} events.", r.journal.events),
    }
}

/// A time within the run, or nothing.
fn at(ts: Option<&str>, start: Option<&str>) -> String {
    ts.map(|t| format_time_of_day(t, start)).unwrap_or_default()
}

/// One row of the steps table.
pub(crate) struct StepRow {
    pub(crate) phase: String,
    pub(crate) started: String,
    pub(crate) ended: String,
    pub(crate) duration: String,
    pub(crate) attempts: String,
    pub(crate) note: String,
}

pub(crate) fn step_row(step: &StepReport, start: Option<&str>) -> StepRow {
    // A step the engine's death interrupted and a resume settled: the
    // engine's own figures cover the resumed part only, where the row's
    // start is the first engine's. The row counts the whole of it.
    let settled_after_stop = step.finished_at.is_some()
        && step
            .attempt_log
            .iter()
            .any(|a| a.end == AttemptEnd::EngineStopped);
    let duration = match (&step.started_at, &step.finished_at) {
        (Some(from), Some(to)) if settled_after_stop => crate::time::between(from, to),
        _ => step.duration_ms,
    };
    let attempts = if settled_after_stop {
        u32::try_from(step.attempt_log.len()).ok()
    } else {
        step.attempts
    };
    StepRow {
        phase: step.phase.clone().unwrap_or_default(),
        started: at(step.started_at.as_deref(), start),
        ended: at(step.finished_at.as_deref(), start),
        duration: duration.map(format_duration).unwrap_or_default(),
        attempts: attempts.map(|n| n.to_string()).unwrap_or_default(),
        note: step_note(step),
    }
}

/// One row of the decisions table, with the step it belongs to.
pub(crate) struct DecisionRow<'a> {
    pub(crate) step: &'a StepReport,
    pub(crate) question: String,
    pub(crate) asked: String,
    pub(crate) decided: String,
    pub(crate) verdict: &'static str,
    pub(crate) by: String,
    pub(crate) waited: String,
}

/// Every decision of the run, step by step.
pub(crate) fn decision_rows<'a>(r: &'a Report, start: Option<&str>) -> Vec<DecisionRow<'a>> {
    r.steps
        .iter()
        .flat_map(|step| step.decisions.iter().map(move |d| (step, d)))
        .map(|(step, d)| DecisionRow {
            step,
            question: match (d.kind, &d.message) {
                (_, Some(message)) => message.clone(),
                (DecisionKind::Gate, None) => "gate".into(),
                (DecisionKind::Confirmation, None) => "did it complete?".into(),
            },
            asked: at(d.waiting_since.as_deref(), start),
            decided: at(d.decided_at.as_deref(), start),
            verdict: verdict(d),
            by: d.decided_by.clone().unwrap_or_default(),
            waited: match (&d.waiting_since, &d.decided_at) {
                (Some(a), Some(b)) => between(a, b).map(format_duration).unwrap_or_default(),
                _ => String::new(),
            },
        })
        .collect()
}

/// One row of the rollbacks table.
pub(crate) struct RollbackRow {
    pub(crate) started: String,
    pub(crate) ended: String,
    pub(crate) duration: String,
    pub(crate) note: String,
}

pub(crate) fn rollback_row(rb: &RollbackReport, start: Option<&str>) -> RollbackRow {
    RollbackRow {
        started: at(rb.started_at.as_deref(), start),
        ended: at(rb.finished_at.as_deref(), start),
        duration: rb
            .duration_ms
            .filter(|_| rb.started_at.is_some())
            .map(format_duration)
            .unwrap_or_default(),
        note: rb
            .error
            .as_deref()
            .map(first_line)
            .or_else(|| rb.reason.clone())
            .or_else(|| rb.would_run.as_deref().map(would))
            .unwrap_or_default(),
    }
}

/// A decision's outcome in words.
pub(crate) fn verdict(d: &Decision) -> &'static str {
    match (d.kind, d.approved) {
        (DecisionKind::Gate, Some(true)) => "approved",
        (DecisionKind::Gate, Some(false)) => "rejected",
        (DecisionKind::Confirmation, Some(true)) => "completed (not run again)",
        (DecisionKind::Confirmation, Some(false)) => "not completed (run again)",
        (_, None) => "undecided",
    }
}

/// The notes column of the steps table.
fn step_note(step: &StepReport) -> String {
    let mut notes = Vec::new();
    if let Some(reason) = &step.reason {
        notes.push(reason.clone());
    }
    if let Some(error) = &step.error {
        notes.push(first_line(error));
    }
    if let Some(planned) = &step.would_run {
        notes.push(would(&first_line(planned)));
    }
    for d in &step.decisions {
        let text = match (d.kind, d.approved) {
            (DecisionKind::Gate, Some(a)) => format!(
                "{} by {}",
                if a { "approved" } else { "rejected" },
                d.decided_by.as_deref().unwrap_or("?")
            ),
            (DecisionKind::Confirmation, Some(true)) => format!(
                "confirmed completed by {}",
                d.decided_by.as_deref().unwrap_or("?")
            ),
            (DecisionKind::Confirmation, Some(false)) => format!(
                "not confirmed by {}; run again",
                d.decided_by.as_deref().unwrap_or("?")
            ),
            (_, None) if step.finished_at.is_some() => {
                "the question was never answered".to_string()
            }
            (_, None) => "waiting for a decision".to_string(),
        };
        // A rejected gate's error already says who rejected it.
        if !notes.iter().any(|n| n.contains(&text)) {
            notes.push(text);
        }
    }
    if step
        .attempt_log
        .iter()
        .any(|a| a.end == AttemptEnd::EngineStopped)
    {
        notes.push(if step.finished_at.is_some() {
            "interrupted by the engine stopping, then settled by the resume (duration from its first start, attempts of both engines)".into()
        } else {
            "interrupted by the engine stopping".into()
        });
    }
    notes.join("; ")
}

/// What a dry run says a step would have done: `would run: TEXT`, unless
/// the text says it itself (a gate's "would wait for a decision: …").
pub(crate) fn would(text: &str) -> String {
    if text.starts_with("would ") {
        text.to_string()
    } else {
        format!("would run: {text}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plan_that_says_would_is_not_said_twice() {
        assert_eq!(super::would("echo hi"), "would run: echo hi");
        assert_eq!(
            super::would("would wait for a decision: go?"),
            "would wait for a decision: go?"
        );
    }
}
