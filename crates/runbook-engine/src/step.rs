//! The contract between the engine and step kinds.
//!
//! Each step kind lives in its own crate and implements [`StepExecutor`] for
//! one `type`. The engine hands every attempt a [`StepContext`]: rendering
//! (with the run's template context), cancellation, live output, progress and
//! secret registration. Executors never print, never touch the journal and
//! never decide retries; they run one attempt and say how it went.

use crate::redact::Redactor;
use crate::template::{RenderFailure, Templates};
use async_trait::async_trait;
use runbook_model::yaml::{Node, Value as YamlValue};
use runbook_model::{Step, Template, Typed};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A step's outputs, readable by later templates as `steps.ID.outputs.*`.
pub type Outputs = serde_json::Map<String, Value>;

/// How one attempt ended.
#[derive(Debug)]
pub enum StepOutcome {
    /// The attempt succeeded.
    Succeeded(Outputs),
    /// The attempt failed; `outputs` still reach later templates (a failed
    /// check's status and body are data for the next step).
    Failed(StepFailure),
    /// `--dry-run`: the step has side effects, so it was not run. The text
    /// says what it would have done.
    WouldRun(String),
}

/// A failed attempt.
#[derive(Debug, Default)]
pub struct StepFailure {
    /// What went wrong, in words an SRE can act on.
    pub message: String,
    /// Whatever outputs were gathered before the failure.
    pub outputs: Outputs,
    /// Another attempt would fail the same way (a template that does not
    /// render: what it reads is fixed for the run), so `retry` is not
    /// applied.
    pub permanent: bool,
}

impl StepFailure {
    /// A failure without outputs.
    pub fn new(message: impl Into<String>) -> Self {
        StepFailure {
            message: message.into(),
            outputs: Outputs::new(),
            permanent: false,
        }
    }

    /// A failure that keeps the outputs gathered so far.
    pub fn with_outputs(message: impl Into<String>, outputs: Outputs) -> Self {
        StepFailure {
            message: message.into(),
            outputs,
            permanent: false,
        }
    }

    /// A failure no retry can mend (see [`StepFailure::permanent`]).
    pub fn permanent(message: impl Into<String>) -> Self {
        StepFailure {
            permanent: true,
            ..StepFailure::new(message)
        }
    }
}

impl From<crate::template::RenderFailure> for StepFailure {
    fn from(error: crate::template::RenderFailure) -> Self {
        StepFailure::permanent(error.0)
    }
}

/// Bounds the live output of a step on its way to the reporters, in two
/// ways. Memory: lines are counted in bytes when sent and released when the
/// dispatcher has shown them, across all steps; past [`BACKLOG_LIMIT`] they
/// are dropped, so a step printing 200 MB cannot grow the engine's memory.
/// Rate: at most [`LiveBudget::per_second`] lines of one step are shown per
/// second (a line longer than [`LIVE_LINE_BYTES`] counting as one per that
/// many bytes), so a flood costs a count of its lines instead of formatting and
/// writing millions of lines nobody can read. Either way the lines not
/// shown are counted, and the count is reported where they were left out.
#[derive(Clone, Debug)]
pub(crate) struct Backlog {
    pub(crate) pending: Arc<AtomicUsize>,
    pub(crate) budget: Arc<LiveBudget>,
}

/// Bytes of live output that may wait for the dispatcher, across all steps.
pub(crate) const BACKLOG_LIMIT: usize = 4 << 20;

/// What one queued message of live output costs in memory: its text, its
/// step id and the message and allocation overhead. Counting text alone let
/// a step printing millions of one-byte lines queue hundreds of megabytes of
/// envelopes; a batch of lines ([`StepMessage::Lines`]) pays the envelope
/// once.
pub(crate) fn queued_cost(step_id: &str, text_len: usize) -> usize {
    const ENVELOPE: usize = std::mem::size_of::<StepMessage>() + 64;
    text_len + step_id.len() + ENVELOPE
}

/// The live lines one step (all its attempts) may show per second, and the
/// lines it did not show that are yet to be reported.
#[derive(Debug)]
pub(crate) struct LiveBudget {
    /// 0: no limit.
    per_second: u64,
    state: std::sync::Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    window_started: Option<Instant>,
    shown_in_window: u64,
    not_shown: u64,
}

impl LiveBudget {
    pub(crate) fn new(per_second: u64) -> Self {
        LiveBudget {
            per_second,
            state: std::sync::Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lines (of [`live_line_units`]) that may still be shown in the
    /// current one-second window.
    fn allowance(&self) -> u64 {
        if self.per_second == 0 {
            return u64::MAX;
        }
        let mut state = self.state();
        let now = Instant::now();
        match state.window_started {
            Some(started) if now.duration_since(started) < Duration::from_secs(1) => {}
            _ => {
                state.window_started = Some(now);
                state.shown_in_window = 0;
            }
        }
        self.per_second.saturating_sub(state.shown_in_window)
    }

    fn shown(&self, units: u64) {
        if self.per_second != 0 {
            self.state().shown_in_window += units;
        }
    }

    fn not_shown(&self, lines: u64) {
        self.state().not_shown += lines;
    }

    /// The lines left out since the last call.
    pub(crate) fn take_not_shown(&self) -> u64 {
        std::mem::take(&mut self.state().not_shown)
    }
}

impl Backlog {
    /// How many lines may be shown now: none while the dispatcher is
    /// [`BACKLOG_LIMIT`] behind, else what the rate allows.
    fn allowance(&self) -> u64 {
        if self.pending.load(Ordering::Relaxed) > BACKLOG_LIMIT {
            return 0;
        }
        self.budget.allowance()
    }

    /// Takes a message costing `cost` bytes and `units` of the rate (see
    /// [`live_line_units`]); returns the count of lines left out before it,
    /// for the dispatcher to report in their place.
    fn admit(&self, cost: usize, units: u64) -> u64 {
        // The byte limit is soft (two steps may pass it at once by a
        // message each), which is fine for a memory bound.
        self.pending.fetch_add(cost, Ordering::Relaxed);
        self.budget.shown(units);
        self.budget.take_not_shown()
    }
}

/// A line of live output longer than this counts against the live-output
/// rate as one line per this many bytes (rounded up). A 64 KiB piece of an
/// endless line is as much for a terminal as hundreds of ordinary lines;
/// counted as one, a 50 MB line went to the terminal whole.
pub(crate) const LIVE_LINE_BYTES: usize = 256;

/// What a line of `len` bytes (without its newline) costs of the rate.
fn live_line_units(len: usize) -> u64 {
    len.div_ceil(LIVE_LINE_BYTES).max(1) as u64
}

/// The number of lines in `text`, whose lines all end with `\n`.
fn count_lines(text: &str) -> u64 {
    // memchr counts with vector instructions: a batch of a 64 KiB read can
    // hold 32,768 lines, and a flood is mostly counted, not shown.
    memchr::memchr_iter(b'\n', text.as_bytes()).count() as u64
}

/// Which stream a line of live output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One step kind.
#[async_trait]
pub trait StepExecutor: Send + Sync {
    /// The `type` this executor runs (`shell`, `http-check`, ...).
    fn kind(&self) -> &'static str;

    /// Runs one attempt of `step`. When `ctx.cancelled()` fires (timeout,
    /// run failure, signal), stop promptly and return; the engine decides
    /// how to report it.
    async fn run(&self, step: &Step, ctx: &StepContext) -> StepOutcome;

    /// Secrets written literally in `step` (a credential header's value),
    /// which the engine masks from the run's start: an earlier step that
    /// prints one must not show it. Kinds without such fields keep the
    /// default.
    fn secrets_in(&self, step: &Step) -> Vec<String> {
        let _ = step;
        Vec::new()
    }

    /// Runs the built-in inverse of `step` (for `rollback: auto`), given the
    /// outputs of its successful run. Kinds without inverses keep the default.
    async fn rollback_auto(
        &self,
        step: &Step,
        outputs: &Outputs,
        ctx: &StepContext,
    ) -> StepOutcome {
        let _ = (outputs, ctx);
        StepOutcome::Failed(StepFailure::new(format!(
            "step `{}` has no automatic rollback",
            step.id.value
        )))
    }
}

/// Messages a step sends to the engine while it runs.
#[derive(Debug)]
pub enum StepMessage {
    /// A line of live output (without its newline).
    Output {
        /// The step.
        step: String,
        /// Which stream.
        stream: Stream,
        /// The line.
        line: String,
        /// Lines of this step left out since the previous message (too
        /// many to show live), to be reported before this one.
        not_shown_before: u64,
    },
    /// Several lines of live output from one stream, in order: each line
    /// followed by `\n` (a line never contains `\n` itself). One message
    /// per read of a pipe instead of one per line: a step printing millions
    /// of short lines costs the engine a message per chunk, not per line.
    Lines {
        /// The step.
        step: String,
        /// Which stream.
        stream: Stream,
        /// The lines, each terminated by `\n`.
        text: String,
        /// Lines of this step left out since the previous message (too
        /// many to show live), to be reported before these.
        not_shown_before: u64,
    },
    /// A progress note ("waiting for 2 of 3 replicas").
    Progress {
        /// The step.
        step: String,
        /// The note.
        message: String,
    },
}

/// Decisions a person (or a flag) can make about a manual gate. The CLI
/// provides the real one (terminal prompt, `--approve`, `runbook approve`);
/// tests inject their own.
#[async_trait]
pub trait Approvals: Send + Sync {
    /// Waits for a decision on `gate` until `cancel` fires. Returns the
    /// decision and who made it, or `None` when cancelled (timeout).
    async fn decide(&self, gate: &GateRequest, cancel: &CancellationToken) -> Option<Decision>;

    /// [`decide`](Approvals::decide), calling `announce` once the gate can
    /// be decided, before any decision is returned. The engine journals
    /// `gate_waiting` from `announce`, so whoever reads that event can act
    /// on it at once: a source that is reached from outside the process
    /// (the waiting file of `runbook approve`) overrides this to announce
    /// only after it is reachable.
    async fn decide_announced(
        &self,
        gate: &GateRequest,
        cancel: &CancellationToken,
        announce: &(dyn Fn() + Send + Sync),
    ) -> Option<Decision> {
        announce();
        self.decide(gate, cancel).await
    }

    /// Told of a gate that decides by itself (its `condition`), which
    /// asks nobody: the engine records its message with the decision.
    fn decided_alone(&self, _gate: &GateRequest) {}
}

/// A manual gate waiting for a decision.
#[derive(Clone, Debug)]
pub struct GateRequest {
    /// The run.
    pub run_id: String,
    /// The gate's step id.
    pub gate: String,
    /// The rendered message.
    pub message: String,
    /// How long the gate will wait.
    pub timeout: Duration,
    /// What is asked.
    pub question: Question,
}

/// What a [`GateRequest`] asks a person.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Question {
    /// A `gate` step: may the run go on? Approved in advance by
    /// `--approve ID` or `--approve-all`.
    #[default]
    Approval,
    /// `runbook resume`: did this step, marked `idempotent: false` and
    /// interrupted by the engine's death, complete? Approving means it
    /// did (it is not run again); rejecting means it did not (it runs
    /// again). Only a person or `--approve ID` answers it, never
    /// `--approve-all`: that a side effect happened is a fact to check, not
    /// a policy.
    Completed,
}

/// A decision on a gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Approved or rejected.
    pub approved: bool,
    /// Who decided: `--approve`, `user@host (terminal)`, `runbook approve by user`.
    pub decided_by: String,
}

/// `now + wait`, or about thirty years from now when a huge duration from
/// the file (`timeout: 9223372036854775807s`) would overflow the clock:
/// for deadlines the engine and the step kinds compute themselves.
pub fn deadline_after(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// What an attempt may use from the run.
pub struct StepContext {
    pub(crate) step_id: String,
    pub(crate) attempt: u32,
    pub(crate) run_id: String,
    pub(crate) dry_run: bool,
    pub(crate) timeout: Duration,
    pub(crate) context: Arc<Value>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) templates: Arc<Templates>,
    pub(crate) redactor: Redactor,
    pub(crate) cancel: CancellationToken,
    pub(crate) messages: mpsc::UnboundedSender<StepMessage>,
    pub(crate) backlog: Option<Backlog>,
    pub(crate) run_dir: PathBuf,
    pub(crate) approvals: Arc<dyn Approvals>,
    /// Set by [`Self::settle`].
    pub(crate) settled: std::sync::atomic::AtomicBool,
}

impl StepContext {
    /// The step id (for a rollback, `PARENT.rollback`).
    pub fn step_id(&self) -> &str {
        &self.step_id
    }

    /// 1 for the first attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Whether the run is a `--dry-run`.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// This attempt's timeout (the engine enforces it through
    /// [`Self::cancelled`]; steps that wait on a server can also pass it on).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Tells the engine the attempt's outcome is decided (a shell step's
    /// process exited): what is left is collecting output, which the step's
    /// timeout no longer cuts short. A script that exits in time but leaves
    /// a detached process holding its output must not fail as "timed out".
    pub fn settle(&self) {
        self.settled
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn is_settled(&self) -> bool {
        self.settled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The run's state directory for this run (`STATE_DIR/runs/RUN_ID`).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Environment for child processes: the runbook's `env` and the step's
    /// `env`, rendered, in that order (later wins).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The token that fires when this attempt must stop.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Approvals for manual gates.
    pub fn approvals(&self) -> &dyn Approvals {
        self.approvals.as_ref()
    }

    /// The template context (`params`, `env`, `steps`, `run`).
    pub fn template_context(&self) -> &Value {
        &self.context
    }

    /// Renders a field. `field` names it in the error message.
    pub fn render(&self, field: &str, template: &Template) -> Result<String, StepFailure> {
        self.templates
            .render(&template.text, &self.context)
            .map_err(|e| field_error(field, template, &e))
    }

    /// Renders a shell script: `{{x}}` inserts one quoted word.
    pub fn render_script(&self, field: &str, template: &Template) -> Result<String, StepFailure> {
        self.templates
            .render_script(&template.text, &self.context)
            .map_err(|e| field_error(field, template, &e))
    }

    /// Renders a template that must produce `true` or `false`.
    pub fn render_condition(&self, field: &str, template: &Template) -> Result<bool, StepFailure> {
        self.templates
            .render_condition(&template.text, &self.context)
            .map_err(|e| field_error(field, template, &e))
    }

    /// Renders every string inside a free-form value (an expected value of
    /// `expect.json`) and converts it to JSON; every template is text.
    pub fn render_tree(&self, field: &str, node: &Node) -> Result<Value, StepFailure> {
        self.render_node(field, node, false)
    }

    /// Renders a tree of YAML values that becomes a document to send (an
    /// HTTP `json` body, a Kubernetes `patch`): as [`Self::render_tree`],
    /// except that a string which is only a reference, such as
    /// `"{{params.replicas}}"`, keeps the type of the value it names (a
    /// number, boolean, list or map is sent as one). A template renders to
    /// text, and a patch setting `replicas: "3"` is refused by the API
    /// server.
    pub fn render_document(&self, field: &str, node: &Node) -> Result<Value, StepFailure> {
        self.render_node(field, node, true)
    }

    fn render_node(
        &self,
        field: &str,
        node: &Node,
        keep_types: bool,
    ) -> Result<Value, StepFailure> {
        Ok(match &node.value {
            YamlValue::Str(s) if keep_types && let Some(value) = self.referenced_value(s) => value,
            YamlValue::Str(s) if s.contains("{{") => {
                let t = Template {
                    text: s.clone(),
                    span: node.span,
                    style: node.style.unwrap_or(runbook_model::yaml::ScalarKind::Plain),
                };
                Value::String(self.render(field, &t)?)
            }
            YamlValue::Seq(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.render_node(field, i, keep_types))
                    .collect::<Result<_, _>>()?,
            ),
            YamlValue::Map(entries) => {
                let mut map = serde_json::Map::new();
                for e in entries {
                    map.insert(
                        e.key.clone(),
                        self.render_node(field, &e.value, keep_types)?,
                    );
                }
                Value::Object(map)
            }
            _ => node.to_json(),
        })
    }

    /// The value `text` names when it is exactly `{{a.b.c}}` (a path, no
    /// helper) and that value is not text: text and null render as usual.
    fn referenced_value(&self, text: &str) -> Option<Value> {
        // Exactly the reference: text around it, a space or a block
        // scalar's newline included, makes the value text.
        let inner = text.strip_prefix("{{")?.strip_suffix("}}")?.trim();
        let is_path = !inner.is_empty()
            && inner.split('.').all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !is_path {
            return None;
        }
        let mut value = self.context.as_ref();
        for segment in inner.split('.') {
            value = match value {
                Value::Object(map) => map.get(segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        (!value.is_string() && !value.is_null()).then(|| value.clone())
    }

    /// Renders a typed field, then parses it into its type.
    pub fn render_typed<T>(&self, field: &str, value: &Typed<T>) -> Result<T, StepFailure>
    where
        T: Clone + ParseRendered,
    {
        match value {
            Typed::Literal(v) => Ok(v.value.clone()),
            Typed::Template(t) => {
                let text = self.render(field, t)?;
                T::parse_rendered(text.trim()).map_err(|expected| {
                    StepFailure::permanent(format!(
                        "`{field}` (line {}) rendered to `{}`, which is not {expected}",
                        t.span.line,
                        self.redactor.redact(&text)
                    ))
                })
            }
        }
    }

    /// Sends one line of live output. In a run, a step that prints faster
    /// than its lines can be shown has the excess left out and counted
    /// (see [`Self::live_line_allowance`]); its outputs are unaffected.
    pub fn output_line(&self, stream: Stream, line: &str) {
        let mut not_shown_before = 0;
        if let Some(backlog) = &self.backlog {
            if backlog.allowance() == 0 {
                backlog.budget.not_shown(1);
                return;
            }
            not_shown_before = backlog.admit(
                queued_cost(&self.step_id, line.len()),
                live_line_units(line.len()),
            );
        }
        let _ = self.messages.send(StepMessage::Output {
            step: self.step_id.clone(),
            stream,
            line: line.to_string(),
            not_shown_before,
        });
    }

    /// Sends a batch of live output lines in one message: `text` holds
    /// whole lines, each terminated by `\n` (a step that reads its output in
    /// chunks sends the complete lines of each chunk; a missing final
    /// newline is added). Shown exactly as if each line had been sent with
    /// [`Self::output_line`]: the lines past the allowance are left out and
    /// counted.
    pub fn output_lines(&self, stream: Stream, mut text: String) {
        if text.is_empty() {
            return;
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let mut not_shown_before = 0;
        if let Some(backlog) = &self.backlog {
            let allowance = backlog.allowance();
            if allowance == 0 {
                backlog.budget.not_shown(count_lines(&text));
                return;
            }
            // The lines that start within the allowance are shown; the
            // last may overdraw it, so a line longer than the whole
            // allowance is still shown once a window.
            let mut units = 0;
            let mut cut = 0;
            for newline in memchr::memchr_iter(b'\n', text.as_bytes()) {
                if units >= allowance {
                    break;
                }
                units += live_line_units(newline - cut);
                cut = newline + 1;
            }
            // Lines left out of this very batch come after the ones shown.
            let excess = count_lines(&text[cut..]);
            text.truncate(cut);
            not_shown_before = backlog.admit(queued_cost(&self.step_id, text.len()), units);
            if excess > 0 {
                backlog.budget.not_shown(excess);
            }
        }
        let _ = self.messages.send(StepMessage::Lines {
            step: self.step_id.clone(),
            stream,
            text,
            not_shown_before,
        });
    }

    /// How many lines of live output may be shown now. A step that reads
    /// output in bulk asks before splitting it into lines: past the
    /// allowance it only counts them and reports the count with
    /// [`Self::output_not_shown`], which is far cheaper for a flood.
    pub fn live_line_allowance(&self) -> u64 {
        self.backlog.as_ref().map_or(u64::MAX, Backlog::allowance)
    }

    /// Counts `lines` lines of live output that the step left out (past
    /// [`Self::live_line_allowance`]); they are reported as not shown.
    pub fn output_not_shown(&self, lines: u64) {
        if let Some(backlog) = &self.backlog {
            backlog.budget.not_shown(lines);
        }
    }

    /// Reports progress while waiting.
    pub fn progress(&self, message: &str) {
        let _ = self.messages.send(StepMessage::Progress {
            step: self.step_id.clone(),
            message: message.to_string(),
        });
    }

    /// Registers a value that must never be shown (an `Authorization` header).
    pub fn add_secret(&self, value: &str) {
        self.redactor.add(value);
    }

    /// Masks registered secrets in `text`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Masks registered secrets in every string (keys too) and number of
    /// `value`.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        let _ = self.redactor.redact_json(value);
    }

    /// Masks registered secrets in `text`, whose end was cut at a limit,
    /// and the beginning of a secret the cut left at its end.
    pub fn redact_cut_end(&self, text: &str) -> String {
        self.redactor.redact_cut_end(text)
    }

    /// Masks registered secrets in `text`, whose start was cut (only its
    /// last bytes were kept), and the end of a secret the cut left there.
    pub fn redact_cut_start(&self, text: &str) -> String {
        self.redactor.redact_cut_start(text)
    }

    /// Masks the end of a secret that a cut left at the start of `text`,
    /// and nothing else (see [`Redactor::mask_cut_start`]).
    pub fn mask_cut_start(&self, text: &str) -> Option<String> {
        self.redactor.mask_cut_start(text)
    }
}

fn field_error(field: &str, template: &Template, failure: &RenderFailure) -> StepFailure {
    let (line, col) = position_in_file(template, failure.1);
    StepFailure::permanent(format!(
        "template in `{field}` (line {line}, column {col}): {}",
        failure.0
    ))
}

/// Where in the file a position inside `template`'s text is, where the
/// text says: on the line of a one-line scalar, or on the lines of a `|`
/// block, which keeps the file's lines at one indentation. Else (folded
/// text, or no position) where the field's value starts.
pub(crate) fn position_in_file(template: &Template, at: Option<(usize, usize)>) -> (u32, u32) {
    use runbook_model::yaml::ScalarKind;
    let start = (template.span.line, template.span.col);
    let Some((line, col)) = at.filter(|&(line, col)| line >= 1 && col >= 1) else {
        return start;
    };
    let offset = |n: usize| u32::try_from(n - 1).unwrap_or(u32::MAX);
    let one_line = !template.text.contains('\n');
    match template.style {
        ScalarKind::Literal => (
            start.0.saturating_add(offset(line)),
            start.1.saturating_add(offset(col)),
        ),
        ScalarKind::Plain if one_line => (start.0, start.1.saturating_add(offset(col))),
        // Past the opening quote; escapes before the position may shift it.
        ScalarKind::SingleQuoted | ScalarKind::DoubleQuoted if one_line => (
            start.0,
            start.1.saturating_add(offset(col)).saturating_add(1),
        ),
        _ => start,
    }
}

/// Types a templated field can be parsed into after rendering.
pub trait ParseRendered: Sized {
    /// Parses rendered text; the error names the expected type.
    fn parse_rendered(text: &str) -> Result<Self, &'static str>;
}

impl ParseRendered for runbook_model::PatchType {
    fn parse_rendered(text: &str) -> Result<Self, &'static str> {
        match text {
            "strategic" => Ok(Self::Strategic),
            "merge" => Ok(Self::Merge),
            "json" => Ok(Self::Json),
            _ => Err("`strategic`, `merge` or `json`"),
        }
    }
}

impl ParseRendered for runbook_model::OnTimeout {
    fn parse_rendered(text: &str) -> Result<Self, &'static str> {
        match text {
            "reject" => Ok(Self::Reject),
            "approve" => Ok(Self::Approve),
            _ => Err("`reject` or `approve`"),
        }
    }
}

impl ParseRendered for i64 {
    fn parse_rendered(text: &str) -> Result<Self, &'static str> {
        text.parse().map_err(|_| "an integer")
    }
}

impl ParseRendered for bool {
    fn parse_rendered(text: &str) -> Result<Self, &'static str> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("`true` or `false`"),
        }
    }
}

impl ParseRendered for Duration {
    fn parse_rendered(text: &str) -> Result<Self, &'static str> {
        runbook_model::parse_duration(text).map_err(|_| "a duration such as `30s`")
    }
}

/// Builds a [`StepContext`] outside a run: for step crates' tests and tools
/// that execute one step. The engine builds its own.
pub struct StepContextBuilder {
    ctx: StepContext,
    receiver: mpsc::UnboundedReceiver<StepMessage>,
}

/// Approvals that never come: a gate waits for its timeout.
struct NoApprovals;

#[async_trait]
impl Approvals for NoApprovals {
    async fn decide(&self, _: &GateRequest, cancel: &CancellationToken) -> Option<Decision> {
        cancel.cancelled().await;
        None
    }
}

impl StepContextBuilder {
    /// A context for `step_id` with an empty template context, one attempt,
    /// a 10-minute timeout and no approvals.
    pub fn new(step_id: &str) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        StepContextBuilder {
            ctx: StepContext {
                step_id: step_id.to_string(),
                attempt: 1,
                run_id: "standalone".to_string(),
                dry_run: false,
                timeout: Duration::from_secs(600),
                context: Arc::new(
                    serde_json::json!({"params": {}, "env": {}, "steps": {}, "run": {"id": "standalone", "name": "standalone", "started_at": "", "dry_run": false}}),
                ),
                env: Vec::new(),
                templates: Arc::new(Templates::new()),
                redactor: Redactor::new(),
                cancel: CancellationToken::new(),
                messages: sender,
                backlog: None,
                run_dir: std::env::temp_dir(),
                approvals: Arc::new(NoApprovals),
                settled: Default::default(),
            },
            receiver,
        }
    }

    /// Sets the template context.
    pub fn context(mut self, context: Value) -> Self {
        self.ctx.context = Arc::new(context);
        self
    }

    /// Sets the environment for child processes.
    pub fn env(mut self, env: Vec<(String, String)>) -> Self {
        self.ctx.env = env;
        self
    }

    /// Marks the run as a dry run.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.ctx.dry_run = dry_run;
        self
    }

    /// Sets the attempt's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.ctx.timeout = timeout;
        self
    }

    /// Sets the run directory.
    pub fn run_dir(mut self, dir: PathBuf) -> Self {
        self.ctx.run_dir = dir;
        self
    }

    /// Sets the run id.
    pub fn run_id(mut self, id: &str) -> Self {
        self.ctx.run_id = id.to_string();
        self
    }

    /// Sets the approvals source for manual gates.
    pub fn approvals(mut self, approvals: Arc<dyn Approvals>) -> Self {
        self.ctx.approvals = approvals;
        self
    }

    /// Shares a redactor.
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.ctx.redactor = redactor;
        self
    }

    /// Shares a cancellation token.
    pub fn cancel(mut self, cancel: CancellationToken) -> Self {
        self.ctx.cancel = cancel;
        self
    }

    /// The context, and the receiving end of its live output and progress.
    pub fn build(self) -> (StepContext, mpsc::UnboundedReceiver<StepMessage>) {
        (self.ctx, self.receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::position_in_file;
    use runbook_model::{StepKind, Template};

    fn run_of(yaml_run: &str) -> Template {
        let text = format!(
            "version: 1\nname: t\nparams: {{x: {{default: a}}}}\nsteps:\n  a:\n    type: shell\n    run: {yaml_run}\n"
        );
        let loaded = runbook_model::load(std::path::Path::new("t.yaml"), &text);
        let runbook = loaded.runbook.expect("valid");
        match &runbook.steps["a"].kind {
            StepKind::Shell(shell) => shell.run.clone(),
            _ => unreachable!("a shell step"),
        }
    }

    /// Handlebars' position inside the text, moved to the file: by lines
    /// in a `|` block, by columns on one line (past a quote).
    #[test]
    fn a_position_in_a_template_is_shown_where_it_is_in_the_file() {
        let literal = run_of("|\n      echo one\n      echo {{params.x}}\n");
        assert_eq!(position_in_file(&literal, Some((2, 6))), (9, 12));
        let plain = run_of("echo {{params.x}}");
        assert_eq!(position_in_file(&plain, Some((1, 6))), (7, 15));
        let quoted = run_of("\"echo {{params.x}}\"");
        assert_eq!(position_in_file(&quoted, Some((1, 6))), (7, 16));
        // Folded text has lost the file's lines: the field's start.
        let folded = run_of(">\n      echo one\n      echo {{params.x}}\n");
        assert_eq!(position_in_file(&folded, Some((1, 15))), (8, 7));
        assert_eq!(position_in_file(&plain, None), (7, 10));
    }
}
