//! Rollbacks after a failure or an interrupt: one at a time, in reverse
//! order of the steps' completion, each reported as `rollback_started` and
//! `rollback_finished`.

use super::*;

impl Dispatcher<'_> {
    pub(super) async fn run_rollbacks(&mut self) {
        let mut order: Vec<usize> = self
            .phase_range(Phase::Main)
            .filter(|&i| {
                self.states[i].status == StepStatus::Succeeded
                    && self.nodes[i].step.rollback.is_some()
            })
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.states[i].finished_seq));
        for i in order {
            let id = &self.nodes[i].step.id.value;
            if let Some(record) = self.restored_rollbacks.remove(id) {
                self.rollbacks.push(record);
                continue;
            }
            if self.abandoned {
                self.rollback_skipped(i, "abandoned by a second interrupt");
            } else if self.options.no_rollback {
                self.rollback_skipped(i, "--no-rollback");
            } else if let Some(why) = self.rollback_on_what_only_would_have_been(i) {
                self.rollback_skipped(i, &why);
            } else {
                self.run_rollback(i).await;
            }
        }
    }

    /// Outside `--dry-run`, why a rollback would act on what only would have
    /// been: the rollback of a step that only would have run (its own
    /// `dry_run` on an `exec`), or one reading the outputs of such a step,
    /// which are nulls.
    fn rollback_on_what_only_would_have_been(&self, i: usize) -> Option<String> {
        if self.options.dry_run || self.planned.is_empty() {
            return None;
        }
        if self.planned.contains(&self.nodes[i].step.id.value) {
            return Some("its step only would have run (its `dry_run`)".to_string());
        }
        let Some(Rollback::Step(step)) = &self.nodes[i].step.rollback else {
            return None;
        };
        let read = self.planned_among(outputs_read(step))?;
        Some(schedule::reads_what_only_would_have_run(&read))
    }

    pub(super) fn rollback_skipped(&mut self, i: usize, reason: &str) {
        let record = RollbackRecord {
            step: self.nodes[i].step.id.value.clone(),
            status: RollbackStatus::Skipped,
            attempts: 0,
            duration: Duration::ZERO,
            error: None,
            reason: Some(reason.to_string()),
            would_run: None,
        };
        let mut event = Event::new(EventKind::RollbackFinished, &self.options.run_id);
        event.step = Some(record.step.clone());
        event.phase = Some(Phase::Rollback);
        event.status = Some(record.status.into());
        event.reason = record.reason.clone();
        self.emit(event);
        self.rollbacks.push(record);
    }

    pub(super) async fn run_rollback(&mut self, i: usize) {
        let parent = self.nodes[i].step.clone();
        let id = parent.id.value.clone();
        let mut event = Event::new(EventKind::RollbackStarted, &self.options.run_id);
        event.step = Some(id.clone());
        event.phase = Some(Phase::Rollback);
        self.emit(event);
        self.rollback_started = Some(Instant::now());
        let (step, mode) = match &parent.rollback {
            Some(Rollback::Step(step)) => (Arc::new((**step).clone()), JobMode::Run),
            Some(Rollback::Auto(_)) | None => (
                parent.clone(),
                JobMode::RollbackAuto(self.outputs(i).clone()),
            ),
        };
        let ctx_id = format!("{id}.rollback");
        // The step's own allowance: the rollback is reported once it ends.
        let budget = self.states[i].budget.clone();
        let job = match self.job(JobKey::Rollback(i), ctx_id, step, mode, budget) {
            Ok(job) => job,
            Err(error) => {
                let result = JobResult {
                    key: JobKey::Rollback(i),
                    ended: Ended::Failed,
                    attempts: 0,
                    outputs: Outputs::new(),
                    error: Some(error),
                    would_run: None,
                };
                self.rollback_finished(i, result);
                if let Some(record) = self.rollback_done.take() {
                    self.rollbacks.push(record);
                }
                return;
            }
        };
        self.spawn(job);
        while self.rollback_done.is_none() {
            let wake = self.next_wake(None, false).await;
            self.handle(wake);
        }
        if let Some(record) = self.rollback_done.take() {
            self.rollbacks.push(record);
        }
    }

    pub(super) fn rollback_finished(&mut self, i: usize, result: JobResult) {
        let id = format!("{}.rollback", self.nodes[i].step.id.value);
        self.report_not_shown(i, &id);
        let status = match result.ended {
            Ended::Succeeded => RollbackStatus::Succeeded,
            Ended::Failed => RollbackStatus::Failed,
            Ended::Cancelled => RollbackStatus::Cancelled,
        };
        let duration = self
            .rollback_started
            .take()
            .map_or(Duration::ZERO, |s| s.elapsed());
        let record = RollbackRecord {
            step: self.nodes[i].step.id.value.clone(),
            status,
            attempts: result.attempts,
            duration,
            error: result.error.clone(),
            reason: None,
            would_run: result.would_run.clone(),
        };
        // A rollback that is a gate is decided like any gate: whoever waits
        // on `gate_waiting` (a reader of the stream, `runbook approve`)
        // needs its answer.
        if let Some(Rollback::Step(step)) = &self.nodes[i].step.rollback
            && let StepKind::Gate(_) = step.kind
        {
            self.emit_gate_decided(id, Phase::Rollback, &result.outputs);
        }
        let mut event = Event::new(EventKind::RollbackFinished, &self.options.run_id);
        event.step = Some(record.step.clone());
        event.phase = Some(Phase::Rollback);
        event.status = Some(status.into());
        event.attempts = Some(result.attempts);
        event.attempt = (result.attempts > 0).then_some(result.attempts);
        event.duration_ms = Some(millis(duration));
        event.error = result.error;
        event.outputs = Some(result.outputs);
        event.would_run = result.would_run;
        self.emit(event);
        self.rollback_done = Some(record);
    }
}
