//! Which step outputs are worth reading in a post-incident report, and how
//! they are trimmed.
//!
//! The journal keeps every output in full (a shell step's last 10,000
//! lines, whole Kubernetes objects). A report is read by people after the
//! incident, so it keeps what explains what happened and cuts the rest:
//!
//! - scalars (exit codes, HTTP status, latency, counts, revisions, replica
//!   numbers, timestamps) are shown as they are;
//! - command and log text (`stdout`, `stderr`, `text`, and any other
//!   multi-line string) keeps its last [`TAIL_LINES`] lines, because the end
//!   of a failing command's output is where its error is; a response `body`
//!   keeps its first lines instead, where a JSON or HTML document says what
//!   it is;
//! - every line is cut at [`MAX_LINE_CHARS`] characters and every text at
//!   [`MAX_TEXT_CHARS`];
//! - a pod list (`pods`) becomes one line per pod (name, phase, ready,
//!   restarts, reasons such as `CrashLoopBackOff`), at most [`MAX_PODS`];
//! - copies of other outputs (`json` parses `stdout` or `body`, `lines`
//!   splits `stdout`), response `headers`, and a gate's own outputs (shown as
//!   its decision instead) are left out, as are nulls, empty strings and
//!   empty lists;
//! - any other list or map is shown as compact JSON when it is short, and
//!   otherwise as a count of its entries (whole Kubernetes objects).

use serde::Serialize;
use serde_json::Value;

/// Lines kept from the end of command or log text.
pub const TAIL_LINES: usize = 10;
/// Characters kept of one line.
pub const MAX_LINE_CHARS: usize = 200;
/// Characters kept of one output's text.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// Pods listed from a `pods` output.
pub const MAX_PODS: usize = 10;
/// Longest compact JSON shown for a list or map.
const MAX_INLINE_JSON: usize = 200;

/// Outputs that repeat another output or are read better elsewhere.
const LEFT_OUT: &[&str] = &["json", "lines", "headers"];
/// A gate's outputs, shown as its decision.
const GATE_OUTPUTS: &[&str] = &["approved", "decided_by", "decided_at"];

/// One output as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputView {
    /// The output's name (`stdout`, `status`, `pods`, …).
    pub name: String,
    /// Its value as text, trimmed.
    pub text: String,
    /// Whether it is several lines (shown as a block, not inline).
    pub block: bool,
    /// What was cut, for the reader (`"42 earlier lines omitted"`), if anything.
    pub trimmed: Option<String>,
}

/// The outputs of a step worth reading, in the journal's order. `is_gate`
/// leaves out a gate's own outputs.
pub fn worth_reading(outputs: &serde_json::Map<String, Value>, is_gate: bool) -> Vec<OutputView> {
    outputs
        .iter()
        .filter(|(name, _)| !LEFT_OUT.contains(&name.as_str()))
        .filter(|(name, _)| !(is_gate && GATE_OUTPUTS.contains(&name.as_str())))
        .filter_map(|(name, value)| view(name, value))
        .collect()
}

fn view(name: &str, value: &Value) -> Option<OutputView> {
    let scalar = |text: String| OutputView {
        name: name.to_string(),
        text,
        block: false,
        trimmed: None,
    };
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(scalar(b.to_string())),
        Value::Number(n) => Some(scalar(n.to_string())),
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(text_view(name, s, name != "body")),
        Value::Array(items) if name == "pods" => Some(pods_view(items)),
        Value::Array(_) | Value::Object(_) => {
            let compact = value.to_string();
            let count = match value {
                Value::Array(items) => items.len(),
                Value::Object(map) => map.len(),
                _ => 0,
            };
            if count == 0 {
                None
            } else if compact.chars().count() <= MAX_INLINE_JSON {
                Some(scalar(compact))
            } else {
                let noun = if value.is_array() { "items" } else { "fields" };
                Some(OutputView {
                    name: name.to_string(),
                    text: format!("({count} {noun})"),
                    block: false,
                    trimmed: Some("too long to show; in the journal".into()),
                })
            }
        }
    }
}

/// Text trimmed to its last (`tail`) or first lines, each line and the
/// whole capped.
fn text_view(name: &str, text: &str, tail: bool) -> OutputView {
    let lines: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    let total = lines.len();
    let kept: Vec<&str> = if tail {
        lines[total.saturating_sub(TAIL_LINES)..].to_vec()
    } else {
        lines[..total.min(TAIL_LINES)].to_vec()
    };
    let mut notes = Vec::new();
    if total > kept.len() {
        let omitted = total - kept.len();
        let which = if tail { "earlier" } else { "later" };
        notes.push(format!(
            "{omitted} {which} line{} omitted",
            if omitted == 1 { "" } else { "s" }
        ));
    }
    let mut cut_lines = false;
    let mut body: Vec<String> = kept
        .iter()
        .map(|line| {
            let (line, cut) = cap(line, MAX_LINE_CHARS);
            cut_lines |= cut;
            line
        })
        .collect();
    if cut_lines {
        notes.push(format!("long lines cut at {MAX_LINE_CHARS} characters"));
    }
    let mut joined = body.join("\n");
    if joined.chars().count() > MAX_TEXT_CHARS {
        // Keep the end for a tail, the start for a head, within the cap.
        while body.len() > 1
            && body.iter().map(|l| l.chars().count() + 1).sum::<usize>() > MAX_TEXT_CHARS
        {
            if tail {
                body.remove(0);
            } else {
                body.pop();
            }
        }
        joined = cap(&body.join("\n"), MAX_TEXT_CHARS).0;
        notes.push(format!("cut to {MAX_TEXT_CHARS} characters"));
    }
    OutputView {
        name: name.to_string(),
        block: total > 1 || joined.chars().count() > 80,
        text: joined,
        trimmed: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// Cuts `text` to `max` characters (on a character boundary), marking the cut.
fn cap(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (format!("{}…", &text[..end]), true),
        None => (text.to_string(), false),
    }
}

fn pods_view(pods: &[Value]) -> OutputView {
    let line = |pod: &Value| {
        let field = |key: &str| pod.get(key).cloned().unwrap_or(Value::Null);
        let name = field("name");
        let reasons: Vec<String> = pod
            .get("reasons")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut text = format!(
            "{} {} ready={} restarts={}",
            name.as_str().unwrap_or("?"),
            field("phase").as_str().unwrap_or("?"),
            field("ready"),
            field("restarts"),
        );
        if !reasons.is_empty() {
            text.push_str(&format!(" ({})", reasons.join(", ")));
        }
        cap(&text, MAX_LINE_CHARS).0
    };
    let shown: Vec<String> = pods.iter().take(MAX_PODS).map(line).collect();
    OutputView {
        name: "pods".into(),
        block: true,
        text: if shown.is_empty() {
            "(none)".into()
        } else {
            shown.join("\n")
        },
        trimmed: (pods.len() > MAX_PODS)
            .then(|| format!("{} more pods omitted", pods.len() - MAX_PODS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outputs(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn shell_outputs_keep_the_tail_and_drop_copies() {
        let stdout: String = (1..=25).map(|n| format!("line {n}\n")).collect();
        let views = worth_reading(
            &outputs(json!({
                "stdout": stdout, "stderr": "", "exit_code": 3,
                "json": null, "lines": ["line 1"],
            })),
            false,
        );
        let names: Vec<_> = views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["stdout", "exit_code"]);
        assert!(views[0].block);
        assert!(views[0].text.starts_with("line 16\n"), "{}", views[0].text);
        assert!(views[0].text.ends_with("line 25"));
        assert_eq!(
            views[0].trimmed.as_deref(),
            Some("15 earlier lines omitted")
        );
        assert_eq!(views[1].text, "3");
    }

    #[test]
    fn long_lines_and_texts_are_capped() {
        let long = "x".repeat(500);
        let views = worth_reading(&outputs(json!({"stderr": long})), false);
        assert_eq!(views[0].text.chars().count(), MAX_LINE_CHARS + 1);
        assert!(views[0].text.ends_with('…'));
        let many: String = (0..10).map(|_| format!("{}\n", "y".repeat(200))).collect();
        let views = worth_reading(&outputs(json!({"stdout": many})), false);
        assert!(views[0].text.chars().count() <= MAX_TEXT_CHARS + 1);
        assert!(
            views[0]
                .trimmed
                .as_deref()
                .is_some_and(|t| t.contains("cut to"))
        );
    }

    #[test]
    fn http_body_keeps_its_head_and_gates_show_no_outputs() {
        let body: String = (1..=12).map(|n| format!("b{n}\n")).collect();
        let views = worth_reading(
            &outputs(json!({"status": 503, "headers": {"a": "b"}, "body": body, "latency_ms": 12})),
            false,
        );
        let names: Vec<_> = views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["status", "body", "latency_ms"]);
        assert!(views[1].text.starts_with("b1\n"));
        assert_eq!(views[1].trimmed.as_deref(), Some("2 later lines omitted"));
        let gate = outputs(json!({"approved": true, "decided_by": "x", "decided_at": "t"}));
        assert!(worth_reading(&gate, true).is_empty());
    }

    #[test]
    fn pods_are_one_line_each_and_big_objects_are_counted() {
        let pods = json!([
            {"name": "db-0", "phase": "Running", "ready": false, "restarts": 7, "reasons": ["CrashLoopBackOff"]},
            {"name": "db-1", "phase": "Running", "ready": true, "restarts": 0, "reasons": []},
        ]);
        let big: Vec<Value> = (0..50).map(|n| json!({"n": n})).collect();
        let views = worth_reading(
            &outputs(json!({"pods": pods, "items": big, "count": 2})),
            false,
        );
        assert_eq!(
            views[0].text,
            "db-0 Running ready=false restarts=7 (CrashLoopBackOff)\ndb-1 Running ready=true restarts=0"
        );
        assert_eq!(views[1].text, "(50 items)");
        assert_eq!(views[2].text, "2");
    }
}
