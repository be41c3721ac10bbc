//! How a run is shown and recorded: the human reporter on stderr (a live
//! display with spinners on a terminal, plain lines otherwise), NDJSON
//! events on stdout for `--output json`, and the journal. [`RunSink`] fans
//! each event out to all three; the engine has already redacted it.

use crate::pipe_writer::{PipeWriter, Stream as PipeStream, WhenFull};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use runbook_engine::{
    Event, EventKind, EventSink, EventStatus, Journal, RollbackStatus, RunStatus, RunSummary,
    StepStatus, Stream, format_duration,
};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// stderr, shared by the reporter, the gate prompt and warnings. On a
/// terminal it owns the live display, which a prompt can pause.
pub struct Screen {
    bars: Option<MultiProgress>,
    paused: AtomicBool,
    color: bool,
    /// Gates whose "waiting for approval" notice has been printed, so a
    /// prompt asks below it rather than in the middle of it.
    announced: std::sync::Mutex<Vec<String>>,
    announcement: tokio::sync::Notify,
    /// The question a prompt is waiting on: lines printed meanwhile start
    /// below it, and another gate's notice is followed by it again.
    question: Arc<std::sync::Mutex<Option<Pending>>>,
    /// When stderr is a pipe: its writer, which never makes the engine
    /// wait for the reader (see [`PipeWriter`]).
    pipe: Option<PipeWriter>,
}

/// A question waiting for its answer.
struct Pending {
    text: String,
    /// Whether the cursor is still on the question's line.
    on_line: bool,
}

/// Clears the pending question when the prompt stops waiting.
pub struct Asking {
    question: Arc<std::sync::Mutex<Option<Pending>>>,
}

impl Drop for Asking {
    fn drop(&mut self) {
        if let Ok(mut question) = self.question.lock() {
            *question = None;
        }
    }
}

impl Screen {
    /// A live, coloured screen when stderr is a terminal and neither
    /// `NO_COLOR` nor `TERM=dumb` asks for plain output.
    pub fn detect() -> Arc<Screen> {
        use std::io::IsTerminal;
        let fancy = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        Arc::new(Screen {
            bars: fancy.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            paused: AtomicBool::new(false),
            color: fancy,
            announced: std::sync::Mutex::new(Vec::new()),
            announcement: tokio::sync::Notify::new(),
            question: Arc::new(std::sync::Mutex::new(None)),
            pipe: PipeWriter::for_stream(PipeStream::Stderr, WhenFull::Drop),
        })
    }

    /// Writes `bytes` to stderr as they are, errors ignored: there is
    /// nowhere left to report them.
    pub fn write_raw(&self, bytes: &[u8]) {
        match &self.pipe {
            Some(pipe) => {
                let _ = pipe.write(bytes);
            }
            None => {
                let _ = std::io::stderr().lock().write_all(bytes);
            }
        }
    }

    /// Waits until everything printed has reached stderr.
    pub fn flush(&self) {
        if let Some(pipe) = &self.pipe {
            pipe.flush();
        }
    }

    /// Marks `question` as waiting for an answer, the cursor after it,
    /// until the guard drops.
    pub fn asking(&self, question: &str) -> Asking {
        if let Ok(mut pending) = self.question.lock() {
            *pending = Some(Pending {
                text: question.trim_start_matches('\n').to_string(),
                on_line: true,
            });
        }
        Asking {
            question: self.question.clone(),
        }
    }

    /// While a question waits: `text` on a line of its own (not after the
    /// question), then, if `ask_again`, the question once more. `None`
    /// when no question waits.
    fn beside_question(&self, text: &str, ask_again: bool) -> Option<String> {
        let mut guard = self.question.lock().ok()?;
        let pending = guard.as_mut()?;
        let mut out = String::new();
        if pending.on_line {
            out.push('\n');
        }
        out.push_str(text);
        out.push('\n');
        pending.on_line = ask_again;
        if ask_again {
            out.push_str(&pending.text);
        }
        Some(out)
    }

    /// A gate's waiting notice: below a waiting question, which is then
    /// asked again, so the cursor never waits under another gate's words.
    fn notice(&self, text: &str) {
        match self.beside_question(text, true) {
            Some(framed) => {
                self.write_raw(framed.as_bytes());
            }
            None => self.line(text),
        }
    }

    /// Records that the waiting notice of `gate` is on the screen.
    fn announced(&self, gate: &str) {
        if let Ok(mut announced) = self.announced.lock() {
            announced.push(gate.to_string());
        }
        self.announcement.notify_waiters();
    }

    /// Waits, at most `limit`, for the waiting notice of `gate` to be
    /// printed (the engine reports it on its own schedule). Returns whether
    /// it was, taking it: a gate asked again waits for its next notice.
    pub async fn await_announcement(&self, gate: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.announcement.notified();
            if let Ok(mut announced) = self.announced.lock()
                && let Some(at) = announced.iter().position(|g| g == gate)
            {
                announced.remove(at);
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Prints one line (above the live display, if any). Errors writing to
    /// stderr are ignored: there is nowhere left to report them.
    pub fn line(&self, text: &str) {
        if let Some(framed) = self.beside_question(text, false) {
            self.write_raw(framed.as_bytes());
            return;
        }
        match &self.bars {
            Some(bars) if !self.paused.load(Ordering::SeqCst) => {
                let _ = bars.println(text);
            }
            _ => {
                // One `write` per line: `writeln!` on unbuffered stderr
                // would issue one for the text and another for the newline.
                let mut line = String::with_capacity(text.len() + 1);
                line.push_str(text);
                line.push('\n');
                self.write_raw(line.as_bytes());
            }
        }
    }

    /// Prints several lines at once: `block` holds whole lines of UTF-8
    /// text, each ending with `\n`, written with one `write` when there is
    /// no live display.
    pub fn block(&self, block: &[u8]) {
        // Only while a gate's question waits, which no flood of output does.
        if self.paused.load(Ordering::Relaxed) {
            let text = String::from_utf8_lossy(block);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            if let Some(framed) = self.beside_question(text, false) {
                self.write_raw(framed.as_bytes());
                return;
            }
        }
        match &self.bars {
            Some(bars) if !self.paused.load(Ordering::SeqCst) => {
                let text = String::from_utf8_lossy(block);
                let _ = bars.println(text.strip_suffix('\n').unwrap_or(&text));
            }
            _ => {
                self.write_raw(block);
            }
        }
    }

    /// Hides the live display until the guard is dropped (a prompt is
    /// waiting for an answer on this terminal).
    pub fn pause(self: &Arc<Self>) -> PauseGuard {
        self.paused.store(true, Ordering::SeqCst);
        if let Some(bars) = &self.bars {
            // Erased first: hidden alone, the spinners' last frame would stay
            // on the screen above the question, frozen.
            let _ = bars.clear();
            bars.set_draw_target(ProgressDrawTarget::hidden());
        }
        PauseGuard {
            screen: self.clone(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A spinner for step `id`, showing `elapsed/limit` when the step has
    /// a time limit.
    fn spinner(&self, id: &str, limit: Option<Duration>) -> Option<ProgressBar> {
        let bars = self.bars.as_ref()?;
        let bar = bars.add(ProgressBar::new_spinner());
        // The limit is fixed per step, so it is part of the template; braces
        // cannot occur in a formatted duration.
        let template = match limit {
            Some(limit) => format!(
                "{{spinner}} {{prefix}} {{elapsed}}/{} {{wide_msg}}",
                format_duration(limit)
            ),
            None => "{spinner} {prefix} {elapsed} {wide_msg}".to_string(),
        };
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(id.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Some(bar)
    }
}

/// Resumes the live display when dropped.
pub struct PauseGuard {
    screen: Arc<Screen>,
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        if let Some(bars) = &self.screen.bars {
            bars.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.screen.paused.store(false, Ordering::SeqCst);
    }
}

/// Human-readable progress on stderr.
pub struct HumanReporter {
    screen: Arc<Screen>,
    /// How to reach this run from another shell (`runbook approve RUN_ID`
    /// plus `--state-dir` when one was given).
    approve_hint: String,
    spinners: HashMap<String, ProgressBar>,
    /// A `--dry-run`: the summary says so, so that a glance at the end of
    /// the output cannot read as a change made to production.
    dry_run: bool,
    /// A resumed run's first start (`run_started`'s `ts`): its summary
    /// gives the run's whole time, as `runs` and `report` do, then this
    /// session's.
    first_started: Option<String>,
}

impl HumanReporter {
    /// A reporter for the run that `runbook approve` reaches as
    /// `approve_hint GATE`.
    pub fn new(screen: Arc<Screen>, approve_hint: String) -> Self {
        HumanReporter {
            screen,
            approve_hint,
            spinners: HashMap::new(),
            dry_run: false,
            first_started: None,
        }
    }

    /// Marks the run as a `--dry-run` in the summary.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    fn ok(&self) -> String {
        self.screen.paint("32", "✓")
    }

    fn bad(&self) -> String {
        self.screen.paint("31", "✗")
    }

    fn stop_spinner(&mut self, id: &str) {
        if let Some(bar) = self.spinners.remove(id) {
            bar.finish_and_clear();
        }
    }

    fn event(&mut self, e: &Event) {
        let id = e.step.clone().unwrap_or_default();
        let took = e
            .duration_ms
            .map(|ms| format!(" {}", seconds(ms)))
            .unwrap_or_default();
        match e.event {
            EventKind::RunStarted => {}
            EventKind::StepStarted => {
                let attempt = e.attempt.unwrap_or(1);
                if let Some(bar) = self.spinners.get(&id) {
                    bar.set_message(format!("attempt {attempt}"));
                } else if let Some(bar) = self
                    .screen
                    .spinner(&id, e.timeout_ms.map(Duration::from_millis))
                {
                    self.spinners.insert(id.clone(), bar);
                } else if attempt == 1 {
                    self.screen.line(&format!("▸ {id} started"));
                } else {
                    self.screen
                        .line(&format!("▸ {id} attempt {attempt} started"));
                }
            }
            EventKind::StepFinished => {
                self.stop_spinner(&id);
                let attempts = match e.attempts {
                    Some(n) if n > 1 => format!(" ({n} attempts)"),
                    _ => String::new(),
                };
                let line = match (e.status, &e.would_run) {
                    (Some(EventStatus::Succeeded), Some(would)) => {
                        let mut lines = would.lines();
                        let first = lines.next().unwrap_or_default();
                        // A shell step's text is its command: say that it
                        // was not run, as the summary's "would run" does.
                        let first = if first.starts_with("would ") {
                            first.to_string()
                        } else {
                            format!("would run: {first}")
                        };
                        let mut text = format!("{} {id} {first}", self.screen.paint("36", "○"));
                        for more in lines {
                            text.push_str("\n    ");
                            text.push_str(more);
                        }
                        text
                    }
                    (Some(EventStatus::Succeeded), None) => {
                        format!("{} {id}{attempts}{took}", self.ok())
                    }
                    (Some(EventStatus::Cancelled), _) => format!(
                        "{} {id} cancelled{}{took}",
                        self.screen.paint("33", "⊘"),
                        detail(
                            &e.error
                                .as_deref()
                                .map(|e| e.strip_prefix("cancelled: ").unwrap_or(e).to_string())
                        )
                    ),
                    _ => format!(
                        "{} {id}{}{attempts}{took}{}",
                        self.bad(),
                        detail(&e.error),
                        rest_of_error(&e.error)
                    ),
                };
                self.screen.line(&line);
            }
            EventKind::StepSkipped => {
                self.screen.line(&format!(
                    "{} {id} skipped: {}",
                    self.screen.paint("33", "↷"),
                    e.reason.as_deref().unwrap_or("")
                ));
            }
            EventKind::GateWaiting => {
                let wait = e
                    .timeout_ms
                    .map(|ms| format!(" (up to {})", format_duration(Duration::from_millis(ms))))
                    .unwrap_or_default();
                self.screen.notice(&format!(
                    "{} {id} is waiting for approval{wait}: {}\n    approve: {hint} {id}\n    reject:  {hint} {id} --reject",
                    self.screen.paint("35", "⏸"),
                    e.message.as_deref().unwrap_or(""),
                    hint = self.approve_hint,
                ));
                self.screen.announced(&id);
            }
            EventKind::GateDecided => {
                let by = e.decided_by.as_deref().unwrap_or("?");
                let line = if e.approved == Some(true) {
                    format!("{} {id} approved by {by}", self.ok())
                } else {
                    format!("{} {id} rejected by {by}", self.bad())
                };
                self.screen.line(&line);
            }
            EventKind::RollbackStarted => {
                self.screen.line(&format!("↺ rolling back {id}"));
            }
            EventKind::RollbackFinished => {
                let line = match e.status {
                    // Under `--dry-run` a rollback that is not read-only
                    // runs no more than its step did.
                    Some(EventStatus::Succeeded) if e.would_run.is_some() => {
                        let would = e.would_run.as_deref().unwrap_or_default();
                        let first = would.lines().next().unwrap_or_default();
                        format!(
                            "↺ {} rollback of {id} {}",
                            self.screen.paint("36", "○"),
                            if first.starts_with("would ") {
                                first.to_string()
                            } else {
                                format!("would run: {first}")
                            }
                        )
                    }
                    Some(EventStatus::Succeeded) => {
                        format!("↺ {} {id} rolled back{took}", self.ok())
                    }
                    Some(EventStatus::Skipped) => format!(
                        "↺ {} rollback of {id} not run: {}",
                        self.screen.paint("33", "↷"),
                        e.reason.as_deref().unwrap_or("")
                    ),
                    _ => format!(
                        "↺ {} rollback of {id} {}{}{took}{}",
                        self.bad(),
                        e.status.map_or("failed", EventStatus::as_str),
                        detail(&e.error),
                        rest_of_error(&e.error)
                    ),
                };
                self.screen.line(&line);
            }
            EventKind::RunFinished => {
                for (_, bar) in self.spinners.drain() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    /// For a resumed run, see [`HumanReporter::first_started`].
    pub fn first_started(mut self, ts: Option<String>) -> Self {
        self.first_started = ts;
        self
    }

    /// The run's time: this session's, or for a resumed run the whole
    /// run's (from its first start, engine down-time included) and then
    /// this session's.
    fn elapsed(&self, session: Duration) -> String {
        let session_ms = u64::try_from(session.as_millis()).unwrap_or(u64::MAX);
        let whole_ms = self
            .first_started
            .as_deref()
            .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
            .and_then(|start| {
                u64::try_from((chrono::Utc::now() - start.to_utc()).num_milliseconds()).ok()
            });
        match whole_ms {
            Some(whole) => format!(
                "{} ({} since the resume)",
                seconds(whole.max(session_ms)),
                seconds(session_ms)
            ),
            None => seconds(session_ms),
        }
    }

    /// The table printed at the end of a run.
    pub fn summary(&self, summary: &RunSummary, journal: &str) {
        let mut out = String::new();
        let status = match summary.status {
            RunStatus::Succeeded => self.screen.paint("32", "succeeded"),
            RunStatus::Failed => self.screen.paint("31", "failed"),
            RunStatus::Interrupted => self.screen.paint("33", "interrupted"),
        };
        out.push_str(&format!(
            "\nrun {} {status}{}{} in {}\n",
            summary.run_id,
            if self.dry_run { " (dry run)" } else { "" },
            // "interrupted: interrupted" says nothing twice; what follows
            // the word, such as the failure that came before, is kept.
            match summary.reason.as_deref() {
                Some(reason) if summary.status == RunStatus::Interrupted => {
                    match reason.strip_prefix("interrupted").map(str::trim) {
                        Some("") => String::new(),
                        Some(rest) => format!(" {rest}"),
                        None => format!(": {reason}"),
                    }
                }
                Some(reason) => format!(": {reason}"),
                None => String::new(),
            },
            self.elapsed(summary.duration)
        ));
        let width = summary
            .steps
            .iter()
            .map(|s| s.id.chars().count())
            .chain(summary.rollbacks.iter().map(|r| r.step.chars().count() + 9))
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "  {:<width$}  {:<10} {:>8} {:>9}\n",
            "STEP", "STATUS", "ATTEMPTS", "DURATION"
        ));
        // Skipped steps are named on one line after the table rather than
        // given a row each: a remedy ladder skips most of its rungs, and
        // 24 skipped rows of 43 hid the one that worked.
        let skipped: Vec<&str> = summary
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Skipped)
            .map(|s| s.id.as_str())
            .collect();
        for step in summary
            .steps
            .iter()
            .filter(|s| s.status != StepStatus::Skipped)
        {
            let status = match (step.status, &step.would_run) {
                (StepStatus::Succeeded, Some(_)) => "would run",
                (status, _) => status.as_str(),
            };
            let phase = match step.phase {
                runbook_model::Phase::Main => "",
                other => other.key(),
            };
            let note = step
                .error
                .as_ref()
                .or(step.reason.as_ref())
                .map(|n| first_line(n, 60))
                .unwrap_or_default();
            let note = match (step.status, step.continue_on_failure) {
                (StepStatus::Failed, true) => format!("{note} (continue_on_failure)"),
                _ => note,
            };
            out.push_str(
                format!(
                    "  {:<width$}  {:<10} {:>8} {:>9}  {}{}",
                    step.id,
                    status,
                    step.attempts,
                    seconds(u64::try_from(step.duration.as_millis()).unwrap_or(u64::MAX)),
                    if phase.is_empty() {
                        String::new()
                    } else {
                        format!("[{phase}] ")
                    },
                    note
                )
                .trim_end(),
            );
            out.push('\n');
        }
        for rollback in &summary.rollbacks {
            let status = match (rollback.status, &rollback.would_run) {
                (RollbackStatus::Succeeded, Some(_)) => "would run",
                (RollbackStatus::Succeeded, None) => "undone",
                (other, _) => other.as_str(),
            };
            let note = rollback
                .error
                .as_ref()
                .or(rollback.reason.as_ref())
                .or(rollback.would_run.as_ref())
                .map(|n| first_line(n, 60))
                .unwrap_or_default();
            out.push_str(
                format!(
                    "  {:<width$}  {:<10} {:>8} {:>9}  {}",
                    format!("rollback {}", rollback.step),
                    status,
                    rollback.attempts,
                    seconds(u64::try_from(rollback.duration.as_millis()).unwrap_or(u64::MAX)),
                    note
                )
                .trim_end(),
            );
            out.push('\n');
        }
        if !skipped.is_empty() {
            out.push_str(&format!(
                "  skipped ({}): {}\n",
                skipped.len(),
                skipped.join(", ")
            ));
        }
        let not_run: Vec<&str> = summary
            .rollbacks
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    RollbackStatus::Skipped | RollbackStatus::Cancelled
                )
            })
            .map(|r| r.step.as_str())
            .collect();
        if !not_run.is_empty() {
            out.push_str(&format!(
                "rollbacks that did not complete: {}\n",
                not_run.join(", ")
            ));
        }
        out.push_str(&format!("journal: {journal}"));
        self.screen.line(&out);
    }
}

/// Where the first line of `text` ends: after its newline, or at the end.
/// Short lines are found by a plain scan of the first bytes, long ones by
/// memchr's vectorized search: with millions of two-byte lines memchr's
/// per-call overhead dominated, with one 64 KiB line the plain scan did.
fn line_end(text: &[u8]) -> usize {
    const SHORT: usize = 16;
    let head = &text[..text.len().min(SHORT)];
    match head.iter().position(|&b| b == b'\n') {
        Some(newline) => newline + 1,
        None if text.len() <= SHORT => text.len(),
        None => memchr::memchr(b'\n', &text[SHORT..]).map_or(text.len(), |i| SHORT + i + 1),
    }
}

/// `(first line of the error)`, or nothing. Long enough for what a
/// failure says (a Kubernetes refusal names the user and the missing Role
/// rule); the terminal wraps it.
fn detail(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|e| {
            format!(
                " ({})",
                cut(e.lines().next().unwrap_or(""), FAILURE_LINE_CHARS)
            )
        })
        .unwrap_or_default()
}

/// How much of a failure's first line the progress line shows.
const FAILURE_LINE_CHARS: usize = 2_000;
/// How many more lines of a failure show under it.
const FAILURE_MORE_LINES: usize = 5;

/// The error's lines after the first, indented under the failure line: a
/// few, then how many more the journal and the report hold.
fn rest_of_error(error: &Option<String>) -> String {
    let Some(error) = error else {
        return String::new();
    };
    let more: Vec<&str> = error.lines().skip(1).collect();
    let mut out = String::new();
    for line in more.iter().take(FAILURE_MORE_LINES) {
        out.push_str("\n    ");
        out.push_str(&cut(line, FAILURE_LINE_CHARS));
    }
    if more.len() > FAILURE_MORE_LINES {
        out.push_str(&format!(
            "\n    … {} more lines in the journal (`runbook report`)",
            more.len() - FAILURE_MORE_LINES
        ));
    }
    out
}

/// `line`, or its first `max` characters and `…`.
fn cut(line: &str, max: usize) -> String {
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max {
        cut(line, max)
    } else if text.lines().nth(1).is_some() {
        format!("{line} …")
    } else {
        line.to_string()
    }
}

/// An elapsed time, written as `runbook runs` and `runbook report` write
/// it (`400ms`, `12.0s`, `3m 05s`), so that the terminal, the history and
/// the report of one run agree.
fn seconds(ms: u64) -> String {
    runbook_report::time::format_duration(ms)
}

/// Every reporter of a run behind one [`EventSink`].
pub struct RunSink {
    /// People.
    pub human: HumanReporter,
    /// `--output json`: NDJSON on stdout.
    pub json: bool,
    /// stdout was closed (`| head`); stop writing to it, quietly.
    stdout_closed: bool,
    /// When stdout is a pipe: its writer (see [`PipeWriter`]). Events are
    /// for a program, which must get all of them: past the writer's
    /// backlog, the engine waits for the reader after all.
    stdout_pipe: Option<PipeWriter>,
    journal: Journal,
    journal_failures: u64,
    /// The journal was deleted or emptied by something else during the run.
    journal_tampered: Option<String>,
}

impl RunSink {
    /// A sink writing to `journal`, and to stdout when `json`.
    pub fn new(human: HumanReporter, json: bool, journal: Journal) -> Self {
        RunSink {
            human,
            json,
            stdout_closed: false,
            stdout_pipe: json
                .then(|| PipeWriter::for_stream(PipeStream::Stdout, WhenFull::Wait))
                .flatten(),
            journal,
            journal_failures: 0,
            journal_tampered: None,
        }
    }

    /// What deleted or emptied the journal during the run did, if anything.
    pub fn journal_tampered(&self) -> Option<&str> {
        self.journal_tampered.as_deref()
    }

    /// Waits until every event and line has been written out.
    pub fn flush_output(&self) {
        if let Some(pipe) = &self.stdout_pipe {
            pipe.flush();
        }
        self.human.screen.flush();
    }

    /// How many times writing or syncing the journal failed.
    pub fn journal_failures(&self) -> u64 {
        self.journal_failures
    }

    /// How many events are still not in the journal at the end of the run
    /// (it tries once more to write them).
    pub fn journal_unwritten(&mut self) -> u64 {
        self.journal.unwritten()
    }

    /// Reported once, loudly; the run goes on (stopping half-way through
    /// an incident because a disk is full would be worse), and the summary
    /// says the journal is incomplete.
    fn journal_failed(&mut self, error: &runbook_engine::JournalError) {
        if let runbook_engine::JournalError::Tampered { what, .. } = error {
            self.human.screen.line(&format!(
                "warning: {error}: {}; the run continues",
                if *what == "deleted" {
                    "nothing that happens from now on is recorded"
                } else {
                    "what happened before is lost from it"
                }
            ));
            self.journal_tampered = Some(error.to_string());
            return;
        }
        if self.journal_failures == 0 {
            self.human.screen.line(&format!(
                "warning: {error}; the run continues, and the events it cannot journal are kept to be written once there is room"
            ));
        }
        self.journal_failures += 1;
    }

    fn write_json(&mut self, event: &Event) {
        if !self.json || self.stdout_closed {
            return;
        }
        let mut line = event.to_json_line();
        line.push('\n');
        let result = match &self.stdout_pipe {
            Some(pipe) => pipe.write(line.as_bytes()),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|()| out.flush())
            }
        };
        match result {
            Ok(()) => {}
            // A reader that went away (`runbook run --output json | head`)
            // is not a reason to stop the run or to complain.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.stdout_closed = true;
            }
            Err(error) => {
                self.stdout_closed = true;
                self.human
                    .screen
                    .line(&format!("warning: cannot write events to stdout: {error}"));
            }
        }
    }
}

impl EventSink for RunSink {
    fn event(&mut self, event: &Event) {
        // Synced in `flush`, once per turn of the engine's loop.
        if let Err(error) = self.journal.write(event) {
            self.journal_failed(&error);
        }
        self.write_json(event);
        self.human.event(event);
    }

    fn flush(&mut self) {
        if let Err(error) = self.journal.sync() {
            self.journal_failed(&error);
        }
    }

    fn output(&mut self, step: &str, _: Stream, line: &str) {
        let prefix = self.human.screen.paint("2", &format!("[{step}]"));
        self.human.screen.line(&format!("{prefix} {line}"));
    }

    fn output_lines(&mut self, step: &str, _: Stream, text: &str) {
        // The same `[step] line` as `output`, built for the whole batch and
        // written in blocks of about `BLOCK` bytes: a step printing millions
        // of short lines costs a `write` per block, not per line.
        // Two copies per line (the prefix, then the line with its newline)
        // and memchr's search for the newline: with millions of one-byte
        // lines the per-line cost is all there is, with one 64 KiB line
        // the per-byte cost.
        const BLOCK: usize = 64 << 10;
        let prefix = format!("{} ", self.human.screen.paint("2", &format!("[{step}]")));
        let prefix = prefix.as_bytes();
        let mut block = Vec::with_capacity(BLOCK + text.len().min(BLOCK));
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            let end = line_end(rest);
            block.extend_from_slice(prefix);
            block.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
            if block.len() >= BLOCK {
                self.human.screen.block(&block);
                block.clear();
            }
        }
        if block.last().is_some_and(|&b| b != b'\n') {
            block.push(b'\n');
        }
        if !block.is_empty() {
            self.human.screen.block(&block);
        }
    }

    fn progress(&mut self, step: &str, message: &str) {
        match self.human.spinners.get(step) {
            Some(bar) => bar.set_message(message.to_string()),
            None => self.human.screen.line(&format!("[{step}] … {message}")),
        }
    }

    fn attempt_failed(&mut self, step: &str, attempt: u32, error: &str, delay: Duration) {
        self.human.screen.line(&format!(
            "{} {step} attempt {attempt} failed ({}); retrying in {}",
            self.human.screen.paint("33", "↻"),
            first_line(error, 200),
            format_duration(delay)
        ));
    }

    fn output_dropped(&mut self, step: &str, count: u64) {
        self.human.screen.line(&format!(
            "[{step}] … {count} lines not shown (more than live output shows, see --live-lines; the step's outputs keep the tail)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(400), "400ms");
        assert_eq!(seconds(12_000), "12.0s");
        assert_eq!(seconds(1_487), "1.5s");
        assert_eq!(seconds(59_960), "1m 00s");
        assert_eq!(seconds(185_000), "3m 05s");
    }

    #[test]
    fn line_ends_are_found_in_short_and_long_lines() {
        assert_eq!(line_end(b"y\ny\n"), 2);
        assert_eq!(line_end(b"\n"), 1);
        assert_eq!(line_end(b"no newline"), 10);
        let long = format!("{}\nnext", "x".repeat(100));
        assert_eq!(line_end(long.as_bytes()), 101);
        let exactly = format!("{}\n", "x".repeat(16));
        assert_eq!(line_end(exactly.as_bytes()), 17);
        assert_eq!(line_end("x".repeat(40).as_bytes()), 40);
    }

    #[test]
    fn details_keep_the_first_line() {
        assert_eq!(first_line("a\nb", 10), "a …");
        assert_eq!(first_line("abcdef", 3), "abc…");
        assert_eq!(detail(&None), "");
    }

    #[test]
    fn a_failure_shows_its_long_first_line_whole_and_a_few_more() {
        // A 403 names the user and the Role rule far past 200 characters.
        let refusal = format!(
            "forbidden: {} User \"system:serviceaccount:x\"",
            "y".repeat(300)
        );
        assert_eq!(detail(&Some(refusal.clone())), format!(" ({refusal})"));
        let many = (1..=9)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let error = Some(many);
        assert_eq!(detail(&error), " (line 1)");
        assert_eq!(
            rest_of_error(&error),
            "\n    line 2\n    line 3\n    line 4\n    line 5\n    line 6\n    … 3 more lines in the journal (`runbook report`)"
        );
        assert_eq!(rest_of_error(&Some("one line".into())), "");
    }
}
