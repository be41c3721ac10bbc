//! Which steps start next, and what an attempt needs to start: its `when`,
//! its rendered `timeout` and `env`, its executor, its template context.

use super::*;

impl Dispatcher<'_> {
    /// Decides every ready step that can be decided (skips propagate, in
    /// file order, until nothing changes), then starts runnable ones in file
    /// order while slots are free.
    pub(super) fn schedule(&mut self) {
        loop {
            let mut changed = false;
            let candidates: Vec<usize> = self.ready.iter().copied().collect();
            for i in candidates {
                match self.readiness(i) {
                    Readiness::Run => {}
                    Readiness::Skip(reason) => {
                        self.skip(i, reason);
                        changed = true;
                    }
                    Readiness::Fail(error) => {
                        self.ready.remove(&i);
                        self.fail_unstarted(i, error);
                        changed = true;
                    }
                }
                if self.stopping.is_some() && self.nodes[i].phase == Phase::Main {
                    return;
                }
            }
            if !changed {
                break;
            }
        }
        let max = self.options.max_parallel.max(1);
        while self.running.len() < max {
            let Some(i) = self.ready.pop_first() else {
                break;
            };
            self.start(i);
            if self.stopping.is_some() && self.nodes[i].phase == Phase::Main {
                return;
            }
        }
    }

    pub(super) fn readiness(&mut self, i: usize) -> Readiness {
        if let Some(read) = self.reads_planned_only(i) {
            if !self.options.dry_run {
                // A real run: a step that decides or acts on what only
                // would have been (an `exec` under its own `dry_run`) does
                // not run, and neither do the steps that need it.
                return Readiness::Skip(reads_what_only_would_have_run(&read));
            }
            // Its `when` would be decided on null placeholders: the step is
            // planned, and `start` reports it as such. With a `when`, only
            // the expression decides (a need that failed does not skip it),
            // so it is planned whatever its needs ended as.
            return if self.nodes[i].step.when.is_some() {
                Readiness::Run
            } else {
                self.needs_readiness(i)
            };
        }
        let node = &self.nodes[i];
        if let Some(when) = &node.step.when {
            return match self.templates.render_condition(&when.text, &self.context) {
                Ok(true) => Readiness::Run,
                Ok(false) => Readiness::Skip("when was false".to_string()),
                Err(error) => {
                    let (line, col) = crate::step::position_in_file(when, error.1);
                    Readiness::Fail(format!(
                        "template in `when` (line {line}, column {col}): {error}"
                    ))
                }
            };
        }
        self.needs_readiness(i)
    }

    /// Whether the step's needs let it run (`when` aside).
    pub(super) fn needs_readiness(&self, i: usize) -> Readiness {
        let node = &self.nodes[i];
        for &need in &node.needs {
            let status = self.states[need].status;
            if status != StepStatus::Succeeded {
                return Readiness::Skip(format!(
                    "needs {} which {}",
                    self.nodes[need].step.id.value,
                    status.as_str()
                ));
            }
        }
        Readiness::Run
    }

    pub(super) fn start(&mut self, i: usize) {
        if self.states[i].confirm {
            self.start_confirmation(i);
            return;
        }
        if let Some(read) = self.reads_planned_only(i) {
            self.plan_only(i, &read);
            return;
        }
        let step = self.nodes[i].step.clone();
        let id = step.id.value.clone();
        let budget = self.states[i].budget.clone();
        let job = match self.job(JobKey::Step(i), id.clone(), step, JobMode::Run, budget) {
            Ok(job) => job,
            Err(error) => {
                self.fail_unstarted(i, error);
                return;
            }
        };
        let mut event = self.mark_started(i, id);
        // Each attempt's limit: a person watching a long wait knows how
        // long it may still take.
        event.timeout_ms = Some(millis(job.timeout));
        self.emit(event);
        self.spawn(job);
    }

    /// Marks step `i` (`id`) as running its first attempt, and returns the
    /// `step_started` event to emit.
    pub(super) fn mark_started(&mut self, i: usize, id: String) -> Event {
        let state = &mut self.states[i];
        state.status = StepStatus::Running;
        state.started = Some(Instant::now());
        state.attempts = 1;
        self.update_context(i);
        let mut event = Event::new(EventKind::StepStarted, &self.options.run_id);
        event.step = Some(id);
        event.phase = Some(self.nodes[i].phase);
        event.attempt = Some(1);
        event
    }

    /// A step this one reads (in any template, `when` included) that only
    /// would have run, under `--dry-run` or its own `dry_run` (an `exec`
    /// cannot be sent as a dry run): its outputs are null placeholders, and
    /// a check, a condition or a script evaluated on them would decide on
    /// nothing. Under `--dry-run` the step is planned; in a real run it is
    /// skipped (see `readiness`).
    pub(super) fn reads_planned_only(&mut self, i: usize) -> Option<String> {
        if self.planned.is_empty() {
            return None;
        }
        let step = &self.nodes[i].step;
        let reads = self
            .outputs_read
            .entry(step.id.value.clone())
            .or_insert_with(|| outputs_read(step))
            .clone();
        self.planned_among(reads)
    }

    /// The first of `reads` (a step's reads of outputs, `None` when it has
    /// some it cannot name) that only would have run.
    pub(super) fn planned_among(&self, reads: Option<Vec<String>>) -> Option<String> {
        match reads {
            Some(ids) => ids.into_iter().find(|id| self.planned.contains(id)),
            // Reads it cannot name (`lookup`): any planned step may be one.
            None => self.planned.first().cloned(),
        }
    }

    /// Records step `i` as planned without running it: it reads `read`,
    /// which only would have run in this dry run.
    pub(super) fn plan_only(&mut self, i: usize, read: &str) {
        let id = self.nodes[i].step.id.value.clone();
        // As any first `step_started` has it, when it can be known without
        // the planned outputs.
        let timeout = self.timeout_of(&self.nodes[i].step).ok().map(millis);
        let mut event = self.mark_started(i, id);
        event.timeout_ms = timeout;
        self.emit(event);
        let outputs = crate::runner::would_run_outputs(&self.nodes[i].step);
        self.step_finished(
            i,
            JobResult {
                key: JobKey::Step(i),
                ended: Ended::Succeeded,
                attempts: 1,
                outputs,
                error: None,
                would_run: Some(format!(
                    "would run; not tried in this dry run, as it reads the outputs of `{read}`, which did not run"
                )),
            },
        );
    }

    /// Instead of running a resumed `idempotent: false` step that was
    /// running when the engine stopped, asks whether it completed (a
    /// `gate_waiting` for the step; see [`crate::step::Question::Completed`]).
    pub(super) fn start_confirmation(&mut self, i: usize) {
        let step = self.nodes[i].step.clone();
        let executor = match self.executor(&step) {
            Ok(executor) => executor,
            Err(error) => {
                self.states[i].confirm = false;
                self.fail_unstarted(i, error);
                return;
            }
        };
        let job = Job {
            key: JobKey::Step(i),
            ctx_id: step.id.value.clone(),
            retry: Retry::default(),
            stop_grace: stop_grace(&step, &self.templates, &self.context),
            mode: JobMode::ConfirmCompleted,
            timeout: self
                .runbook
                .defaults
                .timeout
                .as_ref()
                .map_or(DEFAULT_GATE_TIMEOUT, |t| t.value),
            context: self.snapshot(),
            env: Vec::new(),
            token: CancellationToken::new(),
            budget: self.states[i].budget.clone(),
            shared: self.shared.clone(),
            step,
            executor,
        };
        let state = &mut self.states[i];
        state.status = StepStatus::Running;
        state.started = Some(Instant::now());
        state.confirming = true;
        self.update_context(i);
        self.spawn(job);
    }

    /// The answer to [`Self::start_confirmation`]: completed (recorded as
    /// succeeded, not run), not completed (run now), or no answer (failed).
    pub(super) fn confirmation_finished(&mut self, i: usize, mut result: JobResult) {
        let state = &mut self.states[i];
        state.confirming = false;
        state.confirm = false;
        let answer = match (result.ended, result.outputs.get("approved")) {
            (Ended::Succeeded, Some(Value::Bool(approved))) => Some(*approved),
            _ => None,
        };
        let Some(completed) = answer else {
            // Unanswered: neither run again nor assumed done.
            result.attempts = 0;
            self.step_finished(i, result);
            return;
        };
        let decided_by = result
            .outputs
            .get("decided_by")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let id = self.nodes[i].step.id.value.clone();
        let mut event = Event::new(EventKind::GateDecided, &self.options.run_id);
        // The question asked, as for a gate (`gate_waiting` carried it too).
        event.message = self.gate_messages.remove(&id);
        event.step = Some(id);
        event.phase = Some(self.nodes[i].phase);
        event.approved = Some(completed);
        event.decided_by = Some(decided_by.clone());
        event.status = Some(if completed {
            EventStatus::Approved
        } else {
            EventStatus::Rejected
        });
        self.emit(event);
        if !completed {
            self.states[i].status = StepStatus::Pending;
            self.start(i);
            return;
        }
        // What it produced died with the engine. No outputs at all, rather
        // than nulls that would render as empty text: a template that reads
        // one fails and says so (a rollback run with an empty argument
        // could do harm).
        let state = &mut self.states[i];
        state.status = StepStatus::Succeeded;
        state.attempts = 0;
        state.duration = state.started.map_or(Duration::ZERO, |s| s.elapsed());
        state.reason = Some(format!(
            "confirmed completed by {decided_by} (it was running when the engine stopped; not run again)"
        ));
        self.completions += 1;
        state.finished_seq = self.completions;
        self.update_context(i);
        self.set_outputs(i, Outputs::new());
        self.emit_step_finished(i);
        self.release(i);
    }

    /// Everything a step task needs. Fails when the engine cannot even
    /// start the step: its `timeout` or `env` does not render, or no
    /// executor knows its type.
    pub(super) fn job(
        &mut self,
        key: JobKey,
        ctx_id: String,
        step: Arc<Step>,
        mode: JobMode,
        budget: Arc<LiveBudget>,
    ) -> Result<Job, String> {
        let (timeout, env) = self.prepare(&step)?;
        let executor = self.executor(&step)?;
        let context = self.context_for(&step);
        Ok(Job {
            key,
            ctx_id,
            retry: self.retry_of(&step),
            stop_grace: stop_grace(&step, &self.templates, &self.context),
            mode,
            step,
            executor,
            timeout,
            context,
            env,
            token: CancellationToken::new(),
            budget,
            shared: self.shared.clone(),
        })
    }

    pub(super) fn spawn(&mut self, job: Job) {
        let key = job.key;
        self.running.insert(key, job.token.clone());
        let handle = self.tasks.spawn(run_job(job));
        self.task_keys.insert(handle.id(), key);
    }

    pub(super) fn executor(&self, step: &Step) -> Result<Arc<dyn StepExecutor>, String> {
        let kind = step.kind.type_name();
        self.engine.executors.get(kind).cloned().ok_or_else(|| {
            format!("this build of runbook cannot run `{kind}` steps (no executor registered)")
        })
    }

    pub(super) fn retry_of(&self, step: &Step) -> Retry {
        step.retry_policy(self.runbook.defaults.retry.as_ref())
    }

    /// The limit of each attempt of `step`: its `timeout` (rendered, if a
    /// template), else the default.
    pub(super) fn timeout_of(&self, step: &Step) -> Result<Duration, String> {
        Ok(match &step.timeout {
            Some(Typed::Literal(d)) => d.value,
            Some(Typed::Template(t)) => {
                let text = self
                    .templates
                    .render(&t.text, &self.context)
                    .map_err(|e| format!("template in `timeout` (line {}): {e}", t.span.line))?;
                let timeout = runbook_model::parse_duration(&text).map_err(|e| {
                    format!(
                        "`timeout` (line {}) rendered to `{}`, which is not a duration: {e}",
                        t.span.line,
                        text.trim()
                    )
                })?;
                if timeout < runbook_model::MIN_TIMEOUT {
                    return Err(format!(
                        "`timeout` (line {}) rendered to `{}`: a step needs at least a millisecond to run",
                        t.span.line,
                        text.trim()
                    ));
                }
                timeout
            }
            None => match (&self.runbook.defaults.timeout, &step.kind) {
                (Some(d), _) => d.value,
                (None, StepKind::Gate(_)) => DEFAULT_GATE_TIMEOUT,
                (None, _) => DEFAULT_TIMEOUT,
            },
        })
    }

    /// Renders what the engine itself needs before a step can start: its
    /// timeout and its environment (the runbook's `env`, then the step's).
    pub(super) fn prepare(&self, step: &Step) -> Result<(Duration, Vec<(String, String)>), String> {
        let timeout = self.timeout_of(step)?;
        let mut env = Vec::new();
        for (name, template) in self.runbook.env.iter().chain(step.env.iter()) {
            let value = self
                .templates
                .render(&template.text, &self.context)
                .map_err(|e| {
                    format!(
                        "template in `env.{name}` (line {}): {e}",
                        template.span.line
                    )
                })?;
            env.retain(|(n, _): &(String, String)| n != name);
            env.push((name.clone(), value));
        }
        Ok((timeout, env))
    }
}

/// How long the engine waits for an executor to return after telling it to
/// stop: the step's own grace (shell) plus a margin.
/// A templated grace is rendered here too; if it does not render, the step
/// fails on it before starting, so the default is as good as any.
pub(super) fn stop_grace(step: &Step, templates: &Templates, context: &Value) -> Duration {
    match &step.kind {
        StepKind::Shell(shell) => {
            let grace = match &shell.grace {
                Some(Typed::Literal(grace)) => grace.value,
                Some(Typed::Template(t)) => templates
                    .render(&t.text, context)
                    .ok()
                    .and_then(|text| runbook_model::parse_duration(text.trim()).ok())
                    .unwrap_or(SHELL_GRACE),
                None => SHELL_GRACE,
            };
            grace.saturating_add(STOP_MARGIN)
        }
        StepKind::HttpCheck(_) | StepKind::KubectlAction(_) | StepKind::Gate(_) => {
            SHELL_GRACE + STOP_MARGIN
        }
    }
}

/// Why a step is not run, in a real run, on the nulls of `read`.
pub(super) fn reads_what_only_would_have_run(read: &str) -> String {
    format!("reads the outputs of `{read}`, which only would have run (its `dry_run`)")
}
