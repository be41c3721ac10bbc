//! `runbook resume`: the journal's record of a run laid back onto the
//! dispatcher's state before it continues.

use super::*;

impl Dispatcher<'_> {
    /// Puts back what a resumed run's journal records, without reporting
    /// any of it again: finished steps with their outputs, the run's
    /// failure, and whether cleanup had begun.
    pub(super) fn restore(&mut self, point: ResumePoint) {
        if let Some(first) = &point.first_start
            && let Some(run) = self.context.get_mut("run").and_then(Value::as_object_mut)
        {
            run.insert("started_at".into(), Value::String(first.ts.clone()));
        }
        let mut not_restored = Vec::new();
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].step.id.value.clone();
            let cancelled_for_good = (point.cleanup_began || point.stopping.is_some())
                && self.nodes[i].phase == Phase::Main;
            let record = point.finished.get(&id).or_else(|| {
                cancelled_for_good
                    .then(|| point.cancelled.get(&id))
                    .flatten()
            });
            if let Some(record) = record {
                not_restored.extend(
                    record
                        .masked
                        .iter()
                        .map(|name| format!("steps.{id}.outputs.{name}")),
                );
                let state = &mut self.states[i];
                state.status = record.status;
                state.attempts = record.attempts;
                state.duration = record.duration;
                state.error = record.error.clone();
                state.reason = record.reason.clone();
                state.would_run = record.would_run.clone();
                if record.would_run.is_some() {
                    self.planned.insert(id.clone());
                }
                state.finished_seq = record.seq;
                self.completions = self.completions.max(record.seq);
                self.update_context(i);
                self.set_outputs(i, record.outputs.clone());
            } else if point.interrupted.contains(&id)
                && !self.nodes[i].step.idempotent
                && !self.options.dry_run
            {
                self.states[i].confirm = true;
            }
        }
        self.templates.set_not_restored(not_restored);
        // Dependents of restored steps have those needs met already. Not
        // through `release`, which would queue steps of later phases now.
        for i in 0..self.nodes.len() {
            if self.states[i].status.is_terminal() {
                for d in self.nodes[i].dependents.clone() {
                    let state = &mut self.states[d];
                    state.waiting = state.waiting.saturating_sub(1);
                }
            }
        }
        for i in 0..self.nodes.len() {
            if self.states[i].status == StepStatus::Failed {
                self.failed(i);
            }
        }
        if self.stopping.is_none()
            && let Some(why) = &point.stopping
        {
            // The dead engine had begun to stop: an interrupt, a deadline or
            // a failure stands. A failure is usually in the journal (and
            // restored above), but not that of a step whose last attempt
            // timed out and whose processes were still taking their grace.
            match why.as_str() {
                "interrupted" => self.interrupted = true,
                _ => {
                    self.failure.get_or_insert_with(|| why.clone());
                }
            }
            self.stopping = Some(why.clone());
        }
        if point.cleanup_began {
            if point.was_interrupted && self.failure.is_none() {
                self.interrupted = true;
            }
            if self.stopping.is_none() {
                self.stopping = Some(if self.interrupted {
                    "interrupted".to_string()
                } else {
                    "the run was already cleaning up when its engine stopped".to_string()
                });
            }
        }
        // A step that was still running while the run was already stopping
        // (its stop signal sent, its grace not over) when the engine died:
        // no new step starts in a stopping run, so it is not run again. It
        // did run, so it ends cancelled, not skipped as if it never started.
        if let Some(why) = self.stopping.clone() {
            for i in self.phase_range(Phase::Main) {
                let id = &self.nodes[i].step.id.value;
                if self.states[i].status != StepStatus::Pending || !point.interrupted.contains(id) {
                    continue;
                }
                let attempts = point.attempts_started.get(id).copied().unwrap_or(1);
                // The step whose failure stopped the run, still stopping:
                // its last attempt timed out (see `LastAttemptTimedOut`).
                let failed_here = why == super::outcomes::failure_reason(id);
                self.completions += 1;
                let state = &mut self.states[i];
                state.confirm = false;
                state.attempts = attempts;
                if failed_here {
                    state.status = StepStatus::Failed;
                    state.error = Some(
                        "its last attempt timed out; its engine stopped while the step's processes were given their grace".to_string(),
                    );
                } else {
                    state.status = StepStatus::Cancelled;
                    state.error = Some(format!(
                        "cancelled: {why}; its engine stopped before the step did, and a stopping run starts nothing again"
                    ));
                }
                state.finished_seq = self.completions;
                self.update_context(i);
                self.emit_step_finished(i);
                for d in self.nodes[i].dependents.clone() {
                    let state = &mut self.states[d];
                    state.waiting = state.waiting.saturating_sub(1);
                }
            }
        }
        self.restored_rollbacks = point.rollbacks;
    }
}
