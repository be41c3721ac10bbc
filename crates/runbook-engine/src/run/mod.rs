//! Running a runbook: the [`Engine`], its [`RunOptions`], the
//! [`RunSummary`] it returns, and the dispatcher behind [`Engine::run`].
//!
//! The dispatcher is one loop that owns all run state. Steps run in their
//! own tasks and talk to it over channels (live output, attempt starts and
//! failures, gate waits); the loop `select!`s over those, step completions,
//! the run's deadline and the stop signals, and is the only place that
//! changes a step's status, renders `when`, emits events or decides what
//! runs next. Phases follow spec section 3: main steps, then (after a
//! failure or an interrupt) rollbacks one at a time and `on_failure`, then
//! `finally`.
//!
//! Choices where the spec is silent:
//!
//! - Templates see every step of all three maps from the start. A step that
//!   has not started has status `pending` (`running` while it runs), empty
//!   `outputs`, `error` null, `attempts` 0 and `duration_ms` 0.
//! - Each attempt emits its own `step_started` (with `attempt`); a retry's
//!   `step_started` carries the previous attempt's error in `reason`. No
//!   event kind beyond the spec's list is written; per-attempt failures also
//!   reach people through [`EventSink::attempt_failed`].
//! - Live output lines and progress notes are not events: they go to
//!   [`EventSink::output`]/[`EventSink::progress`] (people only), while the
//!   step's outputs keep the tail for machines. If a step prints faster than
//!   the reporters take lines, the excess is dropped and counted rather than
//!   buffered without bound.
//! - A step that cannot start (its `when`, `timeout` or `env` does not
//!   render, or no executor knows its type) fails with `attempts` 0 and a
//!   `step_finished` without a `step_started`.
//! - `when` is rendered when the step becomes ready, against the context at
//!   that moment.
//! - Under `--dry-run`, `WouldRun` is recorded as `succeeded` with a
//!   `would_run` note and every output name of the kind set to null, so that
//!   dependents are planned too. Gates without a condition do not wait (the
//!   gate kind reports what it would ask).
//! - A step whose last attempt times out has failed then: the run stops
//!   starting and cancels the other main steps at once, not after the
//!   step's own grace, and its `step_finished` follows when its work has
//!   stopped.
//! - `defaults.timeout` applies to gates too; a gate's own `on_timeout`
//!   decision is what is reported when its time is up (the engine's timer
//!   runs one second longer, as a backstop).
//! - Work that completes although it was asked to stop is recorded as
//!   succeeded (and is rolled back like any other). Cancelled executors get
//!   their grace (shell `grace`, else 5 s) plus 5 s to return before they
//!   are abandoned (their futures dropped, whose guards kill what is left).
//! - `on_failure` and `finally` are best effort: a failure there does not
//!   cancel their other steps (dependents are skipped as usual). A failing
//!   `finally` step fails the run; a failing `on_failure` step does not
//!   change a run that has already failed. When the main steps did not fail,
//!   `on_failure` steps end `skipped` ("the main steps did not fail"):
//!   they and the rollbacks answer a failure of the main steps, and a
//!   `finally` step that fails later fails the run without them.
//! - An interrupt stops only the main steps; cleanup that is already
//!   running continues, and the run ends `interrupted`. The second
//!   interrupt abandons everything left: the running rollback is cancelled,
//!   later rollbacks are reported as `rollback_finished` with status
//!   `skipped` and reason "abandoned by a second interrupt", and remaining
//!   `on_failure`/`finally` steps are skipped with the same reason.
//! - `--no-rollback` reports each rollback it skips as `rollback_finished`
//!   with status `skipped` and reason `--no-rollback`.

mod context;
mod outcomes;
mod restore;
mod rollback;
mod schedule;

use context::{initial_context, outputs_read};

use crate::event::{Event, EventKind, EventSink, EventStatus, now_rfc3339};
use crate::journal::RunDir;
use crate::redact::Redactor;
use crate::resume::{ResumePoint, SKIPPED_BY_ABANDON, SKIPPED_BY_INTERRUPT};
use crate::runner::{
    Ended, Internal, Job, JobKey, JobMode, JobResult, ReportingApprovals, Shared, run_job,
};
use crate::step::{
    Approvals, Decision, GateRequest, LiveBudget, Outputs, StepExecutor, StepMessage,
};
use crate::template::Templates;
use async_trait::async_trait;
use indexmap::IndexMap;
use runbook_model::params::ResolvedParam;
use runbook_model::{Phase, Retry, Rollback, Runbook, Step, StepKind, Typed};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Per-attempt timeout when neither the step nor `defaults` sets one.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Per-attempt timeout of a gate when neither the step nor `defaults` sets one.
pub(crate) const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(1800);
/// Most steps running at once unless [`RunOptions::max_parallel`] says
/// otherwise (`--max-parallel`).
pub const DEFAULT_MAX_PARALLEL: u32 = 32;
/// Time an executor gets, beyond its own grace, to return after being told
/// to stop before the engine abandons it.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// A shell step's default `grace`.
const SHELL_GRACE: Duration = Duration::from_secs(5);

/// The step kinds a run can execute, by `type`.
#[derive(Clone, Default)]
pub struct Engine {
    executors: IndexMap<&'static str, Arc<dyn StepExecutor>>,
}

impl Engine {
    /// An engine that knows no step kind yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the executor for its [`StepExecutor::kind`].
    pub fn with_executor(mut self, executor: Arc<dyn StepExecutor>) -> Self {
        self.executors.insert(executor.kind(), executor);
        self
    }

    /// Runs `runbook` to the end (including rollbacks, `on_failure` and
    /// `finally`) and returns what happened. Every event goes to `sink`,
    /// already redacted. The run ends early only when `options.stop` is
    /// triggered twice.
    pub async fn run(
        &self,
        runbook: &Runbook,
        options: RunOptions,
        sink: &mut dyn EventSink,
    ) -> RunSummary {
        Dispatcher::new(self, runbook, options, sink).run().await
    }
}

/// The two stop signals of a run, fed by the CLI from SIGINT/SIGTERM (and by
/// tests directly). Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct StopSignals {
    /// First interrupt: cancel the running main steps, then clean up
    /// (rollbacks, `on_failure`, `finally`) and end as interrupted.
    pub cancel: CancellationToken,
    /// Second interrupt: abandon the cleanup at once.
    pub abandon: CancellationToken,
    count: Arc<AtomicU32>,
}

impl StopSignals {
    /// Signals that have not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one interrupt: the first cancels, the second abandons.
    /// Returns how many interrupts there have been (the CLI exits at once on
    /// the third).
    pub fn interrupt(&self) -> u32 {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        match n {
            1 => self.cancel.cancel(),
            _ => {
                self.cancel.cancel();
                self.abandon.cancel();
            }
        }
        n
    }
}

/// How to run.
pub struct RunOptions {
    /// The run id, as [`RunDir::create`](crate::RunDir::create) made it.
    pub run_id: String,
    /// The run's directory (steps keep per-run files there, such as gate
    /// approvals).
    pub run_dir: PathBuf,
    /// Resolved params (`runbook_model::params::resolve`). Secret values are
    /// used as they are and redacted from everything reported.
    pub params: IndexMap<String, ResolvedParam>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// Most steps running at once (at least 1).
    pub max_parallel: usize,
    /// `--no-rollback`: skip rollbacks after a failure.
    pub no_rollback: bool,
    /// Decisions for manual gates.
    pub approvals: Arc<dyn Approvals>,
    /// Interrupts.
    pub stop: StopSignals,
    /// The engine's environment, exposed as `env.NAME` in templates.
    pub env: Vec<(String, String)>,
    /// The runbook file, absolute (for `run_started`).
    pub file: Option<PathBuf>,
    /// SHA-256 of the runbook file's content, hex (for `run_started`).
    pub runbook_sha256: Option<String>,
    /// Who runs it (for `run_started`).
    pub user: Option<String>,
    /// On which host (for `run_started`).
    pub host: Option<String>,
    /// Most lines of live output shown per second for one step (0: no
    /// limit). The rest are counted and reported as not shown; the step's
    /// outputs are unaffected.
    pub live_lines_per_second: u64,
    /// `runbook resume`: what the run's journal says already happened. The
    /// run continues under the same id: finished steps keep their records
    /// and are not run again (see [`ResumePoint`](crate::ResumePoint)).
    pub resume: Option<ResumePoint>,
}

impl RunOptions {
    /// Options for a run in `run_dir`: no params, not a dry run, 32 steps at
    /// once, rollbacks on, gates that wait for their timeout, the process
    /// environment, and user and host from the environment.
    pub fn new(run_dir: &RunDir) -> Self {
        RunOptions {
            run_id: run_dir.id.clone(),
            run_dir: run_dir.path.clone(),
            params: IndexMap::new(),
            dry_run: false,
            max_parallel: DEFAULT_MAX_PARALLEL as usize,
            no_rollback: false,
            approvals: Arc::new(NoDecisions),
            stop: StopSignals::new(),
            env: std::env::vars().collect(),
            file: None,
            runbook_sha256: None,
            user: crate::identity::current_user(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .or_else(|| std::env::var("HOSTNAME").ok()),
            resume: None,
            live_lines_per_second: DEFAULT_LIVE_LINES_PER_SECOND,
        }
    }
}

/// The default of [`RunOptions::live_lines_per_second`]: far more than a
/// person reads and than most commands print, far less than a flood (a
/// runaway `yes` prints tens of millions of lines a second).
pub const DEFAULT_LIVE_LINES_PER_SECOND: u64 = 10_000;

/// Approvals that never come: a manual gate waits for its timeout.
struct NoDecisions;

#[async_trait]
impl Approvals for NoDecisions {
    async fn decide(&self, _: &GateRequest, cancel: &CancellationToken) -> Option<Decision> {
        cancel.cancelled().await;
        None
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Every step that had to succeed did.
    Succeeded,
    /// A step failed (outside `continue_on_failure`), a gate was rejected,
    /// the deadline passed, or a `finally` step failed.
    Failed,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl From<RunStatus> for EventStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => EventStatus::Succeeded,
            RunStatus::Failed => EventStatus::Failed,
            RunStatus::Interrupted => EventStatus::Interrupted,
        }
    }
}

impl RunStatus {
    /// `succeeded`, `failed` or `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// A step's status. `Pending` and `Running` are never final: a run's summary
/// holds only the last four.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// Not started (templates see `pending`).
    Pending,
    /// Started, not finished.
    Running,
    /// Succeeded (under `--dry-run`, possibly only planned: see `would_run`).
    Succeeded,
    /// Its last attempt failed or timed out, or it could not start.
    Failed,
    /// Did not run (a need did not succeed, `when` was false, or the run
    /// stopped first).
    Skipped,
    /// Stopped because the run was stopping.
    Cancelled,
}

impl StepStatus {
    /// The name used in events and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    /// The status its `step_finished` or `step_skipped` event says; none
    /// before it is final.
    pub fn event_status(self) -> Option<EventStatus> {
        match self {
            StepStatus::Pending | StepStatus::Running => None,
            StepStatus::Succeeded => Some(EventStatus::Succeeded),
            StepStatus::Failed => Some(EventStatus::Failed),
            StepStatus::Skipped => Some(EventStatus::Skipped),
            StepStatus::Cancelled => Some(EventStatus::Cancelled),
        }
    }

    /// Whether the status is final.
    pub fn is_terminal(self) -> bool {
        match self {
            StepStatus::Pending | StepStatus::Running => false,
            StepStatus::Succeeded
            | StepStatus::Failed
            | StepStatus::Skipped
            | StepStatus::Cancelled => true,
        }
    }
}

/// What happened to one step.
#[derive(Clone, Debug)]
pub struct StepRecord {
    /// Step id.
    pub id: String,
    /// Which map it belongs to.
    pub phase: Phase,
    /// Final status.
    pub status: StepStatus,
    /// Attempts made (0 when it never started).
    pub attempts: u32,
    /// From the first attempt's start to the end, retry waits included.
    pub duration: Duration,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Why it was skipped.
    pub reason: Option<String>,
    /// Under `--dry-run`: what it would have done.
    pub would_run: Option<String>,
    /// Whether a failure of this step leaves the run going.
    pub continue_on_failure: bool,
    /// Its outputs, redacted.
    pub outputs: Outputs,
}

/// How a rollback went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed (or timed out).
    Failed,
    /// It was stopped by a second interrupt.
    Cancelled,
    /// It did not run (`--no-rollback`, or abandoned by a second interrupt).
    Skipped,
}

impl From<RollbackStatus> for EventStatus {
    fn from(status: RollbackStatus) -> Self {
        match status {
            RollbackStatus::Succeeded => EventStatus::Succeeded,
            RollbackStatus::Failed => EventStatus::Failed,
            RollbackStatus::Cancelled => EventStatus::Cancelled,
            RollbackStatus::Skipped => EventStatus::Skipped,
        }
    }
}

impl RollbackStatus {
    /// The name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackStatus::Succeeded => "succeeded",
            RollbackStatus::Failed => "failed",
            RollbackStatus::Cancelled => "cancelled",
            RollbackStatus::Skipped => "skipped",
        }
    }
}

/// What happened to one rollback.
#[derive(Clone, Debug)]
pub struct RollbackRecord {
    /// The main step that was rolled back.
    pub step: String,
    /// Result.
    pub status: RollbackStatus,
    /// Attempts made.
    pub attempts: u32,
    /// How long it took.
    pub duration: Duration,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it did not run.
    pub reason: Option<String>,
    /// Under `--dry-run`, what it would have run (it ran nothing).
    pub would_run: Option<String>,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// Why it did not succeed (`step \`x\` failed`, `deadline exceeded`,
    /// `interrupted`).
    pub reason: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// Every step of `steps`, `on_failure` and `finally`, in file order.
    pub steps: Vec<StepRecord>,
    /// Rollbacks in the order they were (or would have been) run.
    pub rollbacks: Vec<RollbackRecord>,
}

/// A step of the run with its place in the graph.
struct Node {
    step: Arc<Step>,
    phase: Phase,
    needs: Vec<usize>,
    dependents: Vec<usize>,
    continue_on_failure: bool,
}

/// A step's mutable state.
struct State {
    status: StepStatus,
    attempts: u32,
    started: Option<Instant>,
    duration: Duration,
    // Its outputs live in the template context only (`steps.ID.outputs`,
    // see `Dispatcher::outputs`): a copy here doubled the memory of a run
    // whose steps print megabytes of JSON.
    error: Option<String>,
    reason: Option<String>,
    would_run: Option<String>,
    /// Order of completion among main steps (rollbacks run in reverse).
    finished_seq: u64,
    /// Needs not yet terminal.
    waiting: usize,
    /// Its live output's allowance, and the lines it left out.
    budget: Arc<LiveBudget>,
    /// Resumed and marked `idempotent: false`, it was running when the
    /// engine stopped: ask whether it completed before running it again.
    confirm: bool,
    /// That question is being asked now.
    confirming: bool,
    /// Its last attempt timed out: it has failed, whatever stops it after.
    timed_out: bool,
}

impl State {
    /// A step that has not started, waiting for `waiting` needs.
    fn pending(waiting: usize, live_lines_per_second: u64) -> State {
        State {
            status: StepStatus::Pending,
            attempts: 0,
            started: None,
            duration: Duration::ZERO,
            error: None,
            reason: None,
            would_run: None,
            finished_seq: 0,
            waiting,
            budget: Arc::new(LiveBudget::new(live_lines_per_second)),
            confirm: false,
            confirming: false,
            timed_out: false,
        }
    }
}

/// What woke the dispatcher.
enum Wake {
    Message(StepMessage),
    Internal(Internal),
    Done(Result<JobResult, (JobKey, String, bool)>),
    Deadline,
    Interrupt,
    Abandon,
    Nothing,
}

/// What a ready step does.
enum Readiness {
    Run,
    Skip(String),
    Fail(String),
}

struct Dispatcher<'a> {
    engine: &'a Engine,
    runbook: &'a Runbook,
    options: RunOptions,
    sink: &'a mut dyn EventSink,
    nodes: Vec<Node>,
    states: Vec<State>,
    context: Value,
    /// Per step id: the `steps.X` its templates read, or `None` when a
    /// template reads `steps` as a whole.
    reads: HashMap<String, Option<Vec<String>>>,
    /// The rendered message of each gate asked or decided, until its
    /// `gate_decided`.
    gate_messages: HashMap<String, String>,
    /// Under `--dry-run`, [`outputs_read`] of each step, once computed.
    outputs_read: HashMap<String, Option<Vec<String>>>,
    /// Under `--dry-run`, the steps that only would have run, whose outputs
    /// are placeholders.
    planned: BTreeSet<String>,
    snapshot: Option<Arc<Value>>,
    /// See [`Dispatcher::base_context`].
    base_context: Option<Arc<Value>>,
    templates: Arc<Templates>,
    redactor: Redactor,
    shared: Arc<Shared>,
    messages: mpsc::UnboundedReceiver<StepMessage>,
    internal: mpsc::UnboundedReceiver<Internal>,
    tasks: JoinSet<JobResult>,
    task_keys: HashMap<tokio::task::Id, JobKey>,
    running: HashMap<JobKey, CancellationToken>,
    ready: BTreeSet<usize>,
    completions: u64,
    /// Why the main phase stopped starting steps.
    stopping: Option<String>,
    /// Why the run failed (first cause).
    failure: Option<String>,
    interrupted: bool,
    /// The main steps are over: `run.status` shows how the run ends so
    /// far, and changes when it does (an interrupt during cleanup).
    outcome_published: bool,
    abandoned: bool,
    rollbacks: Vec<RollbackRecord>,
    rollback_started: Option<Instant>,
    rollback_done: Option<RollbackRecord>,
    /// Rollbacks a resumed run's journal records as finished.
    restored_rollbacks: HashMap<String, RollbackRecord>,
    started: Instant,
}

impl<'a> Dispatcher<'a> {
    fn new(
        engine: &'a Engine,
        runbook: &'a Runbook,
        options: RunOptions,
        sink: &'a mut dyn EventSink,
    ) -> Self {
        let redactor = Redactor::new();
        for param in options.params.values() {
            let text = param.value.to_text();
            if param.secret {
                redactor.add(&text);
            }
            // A URL's password is a secret, given in a param or not.
            for password in runbook_model::plan::url_passwords(&text) {
                redactor.add(&password);
            }
        }
        let mut nodes = Vec::new();
        for (phase, map) in [
            (Phase::Main, &runbook.steps),
            (Phase::OnFailure, &runbook.on_failure),
            (Phase::Finally, &runbook.finally),
        ] {
            let offset = nodes.len();
            for step in map.values() {
                let needs: Vec<usize> = step
                    .needs
                    .iter()
                    .filter_map(|n| map.get_index_of(n.value.as_str()))
                    .map(|i| i + offset)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                nodes.push(Node {
                    step: Arc::new(step.clone()),
                    phase,
                    needs,
                    dependents: Vec::new(),
                    continue_on_failure: step
                        .continue_on_failure
                        .or(runbook.defaults.continue_on_failure)
                        .unwrap_or(false),
                });
            }
        }
        for i in 0..nodes.len() {
            for need in nodes[i].needs.clone() {
                nodes[need].dependents.push(i);
            }
        }
        // Credentials written in the file (a literal `Authorization`
        // header) are masked from the start, not from their step's start.
        for node in &nodes {
            let rollback = match &node.step.rollback {
                Some(Rollback::Step(step)) => Some(step.as_ref()),
                Some(Rollback::Auto(_)) | None => None,
            };
            for step in std::iter::once(node.step.as_ref()).chain(rollback) {
                if let Some(executor) = engine.executors.get(step.kind.type_name()) {
                    for secret in executor.secrets_in(step) {
                        redactor.add(&secret);
                    }
                }
            }
        }
        let states = nodes
            .iter()
            .map(|node| State::pending(node.needs.len(), options.live_lines_per_second))
            .collect();
        let (message_tx, messages) = mpsc::unbounded_channel();
        let (internal_tx, internal) = mpsc::unbounded_channel();
        let templates = Arc::new(Templates::new());
        let shared = Arc::new(Shared {
            run_id: options.run_id.clone(),
            dry_run: options.dry_run,
            templates: templates.clone(),
            redactor: redactor.clone(),
            run_dir: options.run_dir.clone(),
            approvals: Arc::new(ReportingApprovals {
                inner: options.approvals.clone(),
                internal: internal_tx.clone(),
                redactor: redactor.clone(),
            }),
            messages: message_tx,
            internal: internal_tx,
            pending: Arc::new(AtomicUsize::new(0)),
        });
        let context = initial_context(runbook, &options, &nodes);
        Dispatcher {
            engine,
            runbook,
            options,
            sink,
            nodes,
            states,
            context,
            reads: HashMap::new(),
            outputs_read: HashMap::new(),
            planned: BTreeSet::new(),
            gate_messages: HashMap::new(),
            snapshot: None,
            base_context: None,
            templates,
            redactor,
            shared,
            messages,
            internal,
            tasks: JoinSet::new(),
            task_keys: HashMap::new(),
            running: HashMap::new(),
            ready: BTreeSet::new(),
            completions: 0,
            stopping: None,
            failure: None,
            interrupted: false,
            outcome_published: false,
            abandoned: false,
            rollbacks: Vec::new(),
            rollback_started: None,
            rollback_done: None,
            restored_rollbacks: HashMap::new(),
            started: Instant::now(),
        }
    }

    async fn run(mut self) -> RunSummary {
        let resume = self.options.resume.take();
        self.emit_run_started(resume.as_ref());
        if let Some(point) = resume {
            self.restore(point);
        }
        self.run_dag(Phase::Main).await;
        let failed = self.failure.is_some() || self.interrupted;
        self.publish_outcome();
        if failed {
            self.run_rollbacks().await;
            self.run_dag(Phase::OnFailure).await;
        } else {
            self.skip_phase(Phase::OnFailure, "the main steps did not fail");
        }
        self.publish_outcome();
        self.run_dag(Phase::Finally).await;
        self.finish()
    }

    /// How the run ends if nothing else goes wrong, and why.
    fn outcome(&self) -> (RunStatus, Option<String>) {
        if self.interrupted {
            let why = match &self.failure {
                Some(failure) => format!("interrupted ({failure})"),
                None => "interrupted".to_string(),
            };
            (RunStatus::Interrupted, Some(why))
        } else if let Some(failure) = &self.failure {
            (RunStatus::Failed, Some(failure.clone()))
        } else {
            (RunStatus::Succeeded, None)
        }
    }

    /// Puts the outcome so far in `run.status` and `run.error`, so that an
    /// `on_failure` step can tell an operator's Ctrl-C from a remedy that
    /// did not work, and a `finally` step can report either.
    fn publish_outcome(&mut self) {
        self.outcome_published = true;
        let (status, error) = self.outcome();
        if let Some(run) = self.context.get_mut("run").and_then(Value::as_object_mut) {
            run.insert("status".into(), Value::from(status.as_str()));
            run.insert("error".into(), error.map_or(Value::Null, Value::from));
            self.snapshot = None;
            self.base_context = None;
        }
    }

    // ---- phases -------------------------------------------------------

    fn phase_range(&self, phase: Phase) -> std::ops::Range<usize> {
        let start = self.nodes.iter().position(|n| n.phase == phase);
        match start {
            Some(start) => {
                let len = self.nodes[start..]
                    .iter()
                    .take_while(|n| n.phase == phase)
                    .count();
                start..start + len
            }
            None => 0..0,
        }
    }

    async fn run_dag(&mut self, phase: Phase) {
        let range = self.phase_range(phase);
        if self.abandoned {
            self.skip_range(range, "abandoned by a second interrupt");
            return;
        }
        for i in range.clone() {
            // Steps a resumed run restored from its journal are terminal.
            if self.states[i].waiting == 0 && self.states[i].status == StepStatus::Pending {
                self.ready.insert(i);
            }
        }
        let main = phase == Phase::Main;
        let deadline = if main {
            self.runbook
                .timeout
                .as_ref()
                .map(|t| crate::step::deadline_after(t.value))
        } else {
            None
        };
        loop {
            if self.abandoned {
                self.settle_abandoned().await;
                break;
            }
            if self.stopping.is_none() || !main {
                self.schedule();
            }
            if self.running.is_empty() {
                break;
            }
            let wake = self.next_wake(deadline, main).await;
            self.handle(wake);
        }
        self.ready.clear();
        let reason = if self.abandoned {
            SKIPPED_BY_ABANDON.to_string()
        } else {
            match &self.stopping {
                Some(why) if main && why == "interrupted" => SKIPPED_BY_INTERRUPT.to_string(),
                Some(why) if main => format!("run stopped: {why}"),
                _ => "its needs never finished".to_string(),
            }
        };
        self.skip_range(range, &reason);
        // Skipping releases dependents into `ready`; they belong to this
        // phase and are terminal now, and leaving them there would make the
        // next phase's scheduler stop at them instead of starting its own.
        self.ready.clear();
    }

    /// After the second interrupt: the aborted tasks end at once (their
    /// futures dropped, the executors' guards killing what they started);
    /// each is recorded as it ended, so that no step is left `running` in
    /// the journal of a finished run.
    async fn settle_abandoned(&mut self) {
        while !self.tasks.is_empty() {
            let wake = self.next_wake(None, false).await;
            self.handle(wake);
        }
    }

    fn skip_range(&mut self, range: std::ops::Range<usize>, reason: &str) {
        for i in range {
            if self.states[i].status == StepStatus::Pending {
                self.skip(i, reason.to_string());
            }
        }
    }

    fn skip_phase(&mut self, phase: Phase, reason: &str) {
        let range = self.phase_range(phase);
        self.skip_range(range, reason);
    }

    // ---- waiting ------------------------------------------------------

    async fn next_wake(&mut self, deadline: Option<Instant>, main: bool) -> Wake {
        // Everything this turn reported (a step's end, the next one's
        // start) reaches the disk together, before the wait.
        self.sink.flush();
        let deadline_armed = deadline.is_some() && main && self.stopping.is_none();
        let deadline = deadline.unwrap_or_else(Instant::now);
        let watch_interrupt = !self.interrupted;
        let watch_abandon = !self.abandoned;
        // Biased: output first, so a step's last lines are shown before its
        // result, and attempt starts before completions.
        tokio::select! {
            biased;
            Some(message) = self.messages.recv() => Wake::Message(message),
            Some(internal) = self.internal.recv() => Wake::Internal(internal),
            Some(done) = self.tasks.join_next_with_id() => Wake::Done(match done {
                Ok((id, result)) => {
                    self.task_keys.remove(&id);
                    Ok(result)
                }
                Err(error) => {
                    let key = self.task_keys.remove(&error.id());
                    let panicked = error.is_panic();
                    let text = if panicked {
                        "the step's executor panicked (a bug in runbook)".to_string()
                    } else {
                        "abandoned by a second interrupt".to_string()
                    };
                    match key {
                        Some(key) => Err((key, text, panicked)),
                        // Every spawned task is recorded; an unknown id
                        // cannot happen, and waking again is harmless.
                        None => return Wake::Nothing,
                    }
                }
            }),
            () = self.options.stop.abandon.cancelled(), if watch_abandon => Wake::Abandon,
            () = self.options.stop.cancel.cancelled(), if watch_interrupt => Wake::Interrupt,
            () = tokio::time::sleep_until(deadline), if deadline_armed => Wake::Deadline,
        }
    }

    /// A message of live output from `step` with `len` bytes of text
    /// arrived: it no longer counts against the backlog, and the lines
    /// left out before it are reported in their place.
    fn live_output_arrived(&mut self, step: &str, len: usize, not_shown_before: u64) {
        let cost = crate::step::queued_cost(step, len);
        self.shared.pending.fetch_sub(
            cost.min(self.shared.pending.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if not_shown_before > 0 {
            self.sink.output_dropped(step, not_shown_before);
        }
    }

    fn handle(&mut self, wake: Wake) {
        match wake {
            Wake::Message(StepMessage::Output {
                step,
                stream,
                line,
                not_shown_before,
            }) => {
                self.live_output_arrived(&step, line.len(), not_shown_before);
                let line = self.redactor.redact(&line);
                self.sink.output(&step, stream, &line);
            }
            Wake::Message(StepMessage::Lines {
                step,
                stream,
                text,
                not_shown_before,
            }) => {
                self.live_output_arrived(&step, text.len(), not_shown_before);
                // Redacting the batch as a whole masks what per-line
                // redaction would (each line of a multi-line secret is a
                // secret of its own), and skips the copy when there is
                // nothing to mask.
                if self.redactor.is_empty() {
                    self.sink.output_lines(&step, stream, &text);
                } else {
                    let text = self.redactor.redact(&text);
                    self.sink.output_lines(&step, stream, &text);
                }
            }
            Wake::Message(StepMessage::Progress { step, message }) => {
                let message = self.redactor.redact(&message);
                self.sink.progress(&step, &message);
            }
            Wake::Internal(Internal::AttemptStarted {
                key,
                attempt,
                reason,
            }) => {
                let mut event = Event::new(EventKind::StepStarted, &self.options.run_id);
                event.attempt = Some(attempt);
                event.reason = reason;
                match key {
                    JobKey::Step(i) => {
                        event.step = Some(self.nodes[i].step.id.value.clone());
                        event.phase = Some(self.nodes[i].phase);
                        self.states[i].attempts = attempt;
                        self.emit(event);
                    }
                    // A rollback's attempts are reported by rollback_started
                    // and rollback_finished alone.
                    JobKey::Rollback(_) => {}
                }
            }
            Wake::Internal(Internal::AttemptFailed {
                key,
                attempt,
                error,
                delay,
            }) => {
                let step = match key {
                    JobKey::Step(i) => self.nodes[i].step.id.value.clone(),
                    JobKey::Rollback(i) => format!("{}.rollback", self.nodes[i].step.id.value),
                };
                let error = self.redactor.redact(&error);
                self.sink.attempt_failed(&step, attempt, &error, delay);
            }
            Wake::Internal(Internal::LastAttemptTimedOut { key }) => {
                // Its end may have been handled already (a process that
                // stopped at once); then `failed` has run.
                if let JobKey::Step(i) = key
                    && self.states[i].status == StepStatus::Running
                {
                    self.states[i].timed_out = true;
                    self.failed(i);
                }
            }
            Wake::Internal(Internal::GateAsked(request)) => {
                self.gate_messages.insert(request.gate, request.message);
            }
            Wake::Internal(Internal::GateWaiting(request)) => {
                let mut event = Event::new(EventKind::GateWaiting, &self.options.run_id);
                event.phase = self.phase_of(&request.gate);
                event.step = Some(request.gate.clone());
                event.message = Some(request.message.clone());
                event.timeout_ms = Some(millis(request.timeout));
                self.emit(event);
            }
            Wake::Done(Ok(result)) => self.finished(result),
            Wake::Done(Err((key, error, panicked))) => {
                let result = JobResult {
                    key,
                    ended: if panicked {
                        Ended::Failed
                    } else {
                        Ended::Cancelled
                    },
                    attempts: match key {
                        JobKey::Step(i) => self.states[i].attempts,
                        JobKey::Rollback(_) => 1,
                    },
                    outputs: Outputs::new(),
                    error: Some(error),
                    would_run: None,
                };
                self.finished(result);
            }
            Wake::Nothing => {}
            Wake::Deadline => {
                self.failure
                    .get_or_insert_with(|| "deadline exceeded".to_string());
                self.stop_main("deadline exceeded".to_string());
            }
            Wake::Interrupt => {
                self.interrupted = true;
                if self.stopping.is_none() {
                    self.stop_main("interrupted".to_string());
                }
                // During cleanup, steps that start from now on see that
                // the run is ending `interrupted`.
                if self.outcome_published {
                    self.publish_outcome();
                }
            }
            Wake::Abandon => {
                self.interrupted = true;
                self.abandoned = true;
                // Aborting drops each step's future; the executors' drop
                // guards kill what they started (process groups).
                self.tasks.abort_all();
                for token in self.running.values() {
                    token.cancel();
                }
            }
        }
    }

    /// The phase of the step a job runs as `id` (`X`, or `X.rollback`).
    fn phase_of(&self, id: &str) -> Option<Phase> {
        if id.ends_with(".rollback") {
            return Some(Phase::Rollback);
        }
        self.nodes
            .iter()
            .find(|node| node.step.id.value == id)
            .map(|node| node.phase)
    }

    /// Stops the main phase: nothing new starts, running steps are told to
    /// stop (they end `cancelled`).
    fn stop_main(&mut self, why: String) {
        if self.stopping.is_some() {
            return;
        }
        // The journal shows the stop only when a step ends because of it;
        // an engine killed before that leaves this for `resume`.
        let marker = self.options.run_dir.join(crate::resume::STOPPING_FILE);
        // Owner-only, like everything else in the run directory.
        let marker_file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&marker)
        };
        let _ = marker_file.and_then(|mut file| {
            std::io::Write::write_all(&mut file, format!("{why}\n").as_bytes())?;
            file.sync_data()
        });
        self.stopping = Some(why);
        for (key, token) in &self.running {
            if let JobKey::Step(i) = key
                && self.nodes[*i].phase == Phase::Main
            {
                token.cancel();
            }
        }
    }

    // ---- events -------------------------------------------------------

    /// Reports the decision of gate `gate`, if it was decided: a gate that
    /// was cancelled or failed before anyone answered has no `approved`.
    fn emit_gate_decided(&mut self, gate: String, phase: Phase, outputs: &Outputs) {
        let Some(Value::Bool(approved)) = outputs.get("approved") else {
            return;
        };
        let mut event = Event::new(EventKind::GateDecided, &self.options.run_id);
        // Also for a gate nobody was asked (approved in advance, or by its
        // condition), which has no `gate_waiting` to carry its message.
        event.message = self.gate_messages.remove(&gate);
        event.step = Some(gate);
        event.phase = Some(phase);
        event.approved = Some(*approved);
        event.decided_by = outputs
            .get("decided_by")
            .and_then(Value::as_str)
            .map(str::to_string);
        event.status = Some(if *approved {
            EventStatus::Approved
        } else {
            EventStatus::Rejected
        });
        self.emit(event);
    }

    /// Redacts and reports an event. Every event goes through here.
    fn emit(&mut self, mut event: Event) {
        self.mask_texts(&mut event);
        let r = &self.redactor;
        if let Some(mut outputs) = event.outputs.take() {
            let mut masked = Vec::new();
            for (name, value) in outputs.iter_mut() {
                if r.redact_json(value) {
                    masked.push(name.clone());
                }
            }
            event.masked_outputs = (!masked.is_empty()).then_some(masked);
            event.outputs = Some(outputs);
        }
        self.sink.event(&event);
    }

    /// [`Self::emit`] for an event whose outputs are lent to it: gives
    /// them back as they were. They are copied only when a secret in them
    /// is to be masked: a megabyte of JSON output is ten as a tree, and a
    /// copy for every `step_finished` doubled a run's peak memory.
    fn emit_lent(&mut self, mut event: Event) -> Outputs {
        let outputs = event.outputs.take().unwrap_or_default();
        if outputs
            .values()
            .any(|value| self.redactor.finds_in_json(value))
        {
            event.outputs = Some(outputs.clone());
            self.emit(event);
            return outputs;
        }
        self.mask_texts(&mut event);
        event.outputs = Some(outputs);
        self.sink.event(&event);
        event.outputs.unwrap_or_default()
    }

    fn mask_texts(&self, event: &mut Event) {
        let r = &self.redactor;
        for text in [
            &mut event.error,
            &mut event.reason,
            &mut event.message,
            &mut event.would_run,
            &mut event.decided_by,
        ]
        .into_iter()
        .flatten()
        {
            *text = r.redact(text);
        }
    }

    fn emit_run_started(&mut self, resume: Option<&ResumePoint>) {
        let mut event = Event::new(EventKind::RunStarted, &self.options.run_id);
        if let Some(point) = resume {
            event.resumed = Some(true);
            event.reason = point.note.clone();
        }
        event.runbook = Some(self.runbook.name.value.clone());
        event.file = self.options.file.as_ref().map(|f| f.display().to_string());
        event.runbook_sha256 = self.options.runbook_sha256.clone();
        event.user = self.options.user.clone();
        event.host = self.options.host.clone();
        event.dry_run = Some(self.options.dry_run);
        event.no_rollback = self.options.no_rollback.then_some(true);
        event.params = Some(
            self.options
                .params
                .iter()
                .map(|(name, p)| {
                    let value = if p.secret {
                        Value::String("***".into())
                    } else {
                        // Another secret (a URL's password) may be in it.
                        let mut value = p.value.to_json();
                        let _ = self.redactor.redact_json(&mut value);
                        value
                    };
                    (name.clone(), value)
                })
                .collect(),
        );
        self.emit(event);
    }

    fn finish(mut self) -> RunSummary {
        let (status, reason) = self.outcome();
        let duration = self.started.elapsed();
        let mut event = Event::new(EventKind::RunFinished, &self.options.run_id);
        event.status = Some(status.into());
        event.duration_ms = Some(millis(duration));
        event.error = reason.clone();
        self.emit(event);
        self.sink.flush();
        // The run is over: the template context goes, and the records take
        // the steps' outputs instead of copies, so a long run's outputs are
        // not held three times over at its end.
        let mut entries = match std::mem::take(&mut self.context) {
            Value::Object(mut context) => match context.remove("steps") {
                Some(Value::Object(steps)) => steps,
                _ => Map::new(),
            },
            _ => Map::new(),
        };
        self.snapshot = None;
        self.base_context = None;
        let states = std::mem::take(&mut self.states);
        let steps = self
            .nodes
            .iter()
            .zip(states)
            .map(|(node, state)| {
                let mut outputs = match entries.get_mut(&node.step.id.value) {
                    Some(Value::Object(entry)) => {
                        entry.remove("outputs").unwrap_or(Value::Object(Map::new()))
                    }
                    _ => Value::Object(Map::new()),
                };
                let _ = self.redactor.redact_json(&mut outputs);
                StepRecord {
                    id: node.step.id.value.clone(),
                    phase: node.phase,
                    status: state.status,
                    attempts: state.attempts,
                    duration: state.duration,
                    error: state.error.as_deref().map(|e| self.redactor.redact(e)),
                    reason: state.reason.as_deref().map(|e| self.redactor.redact(e)),
                    would_run: state.would_run.as_deref().map(|e| self.redactor.redact(e)),
                    continue_on_failure: node.continue_on_failure,
                    outputs: match outputs {
                        Value::Object(map) => map,
                        _ => Outputs::new(),
                    },
                }
            })
            .collect();
        let rollbacks = self
            .rollbacks
            .iter()
            .map(|r| RollbackRecord {
                error: r.error.as_deref().map(|e| self.redactor.redact(e)),
                ..r.clone()
            })
            .collect();
        RunSummary {
            run_id: self.options.run_id.clone(),
            status,
            reason,
            duration,
            steps,
            rollbacks,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
