//! What follows an attempt's end: the step's status and outputs, its
//! `step_finished`, and what its failure or skip does to the steps after it.

use super::*;

impl Dispatcher<'_> {
    pub(super) fn finished(&mut self, result: JobResult) {
        self.running.remove(&result.key);
        match result.key {
            JobKey::Step(i) => self.step_finished(i, result),
            JobKey::Rollback(i) => self.rollback_finished(i, result),
        }
    }

    pub(super) fn step_finished(&mut self, i: usize, result: JobResult) {
        if self.states[i].confirming {
            self.confirmation_finished(i, result);
            return;
        }
        let (status, error) = match result.ended {
            Ended::Succeeded => (StepStatus::Succeeded, None),
            Ended::Failed => (StepStatus::Failed, result.error),
            // Abandoned (a second interrupt) while its processes took their
            // grace: the timeout had already failed it, and the run with it.
            Ended::Cancelled if self.states[i].timed_out => {
                let abandoned = result.error.map_or_else(String::new, |e| format!("; {e}"));
                (
                    StepStatus::Failed,
                    Some(format!("its last attempt timed out{abandoned}")),
                )
            }
            Ended::Cancelled => {
                let why = self
                    .stopping
                    .clone()
                    .unwrap_or_else(|| "interrupted".to_string());
                let error = match result.error {
                    Some(detail) if self.abandoned => detail,
                    Some(detail) => format!("cancelled: {why} ({detail})"),
                    None => format!("cancelled: {why}"),
                };
                (StepStatus::Cancelled, Some(error))
            }
        };
        if result.would_run.is_some() {
            self.planned.insert(self.nodes[i].step.id.value.clone());
        }
        let state = &mut self.states[i];
        state.status = status;
        state.attempts = result.attempts;
        state.duration = state.started.map_or(Duration::ZERO, |s| s.elapsed());
        state.error = error;
        state.would_run = result.would_run;
        self.completions += 1;
        state.finished_seq = self.completions;
        let id = self.nodes[i].step.id.value.clone();
        self.report_not_shown(i, &id);
        self.update_context(i);
        self.set_outputs(i, result.outputs);
        if let StepKind::Gate(_) = self.nodes[i].step.kind {
            let outputs = self.outputs(i).clone();
            self.emit_gate_decided(id, self.nodes[i].phase, &outputs);
        }
        self.emit_step_finished(i);
        if status == StepStatus::Failed {
            self.failed(i);
        }
        self.release(i);
    }

    /// Reports the lines of step `i` (or its rollback, `id`) left out of
    /// the live output after the last ones shown.
    pub(super) fn report_not_shown(&mut self, i: usize, id: &str) {
        let not_shown = self.states[i].budget.take_not_shown();
        if not_shown > 0 {
            self.sink.output_dropped(id, not_shown);
        }
    }

    /// A step failed: what that means for the run.
    pub(super) fn failed(&mut self, i: usize) {
        let node = &self.nodes[i];
        if node.continue_on_failure {
            return;
        }
        let why = failure_reason(&node.step.id.value);
        match node.phase {
            Phase::Main => {
                self.failure.get_or_insert_with(|| why.clone());
                self.stop_main(why);
            }
            // Cleanup is best effort: a failing finally step fails the run
            // but the other cleanup steps still run.
            Phase::Finally => {
                self.failure.get_or_insert(why);
                // The finally steps after this one see the run as failed.
                self.publish_outcome();
            }
            Phase::OnFailure | Phase::Rollback => {}
        }
    }

    pub(super) fn fail_unstarted(&mut self, i: usize, error: String) {
        let state = &mut self.states[i];
        state.status = StepStatus::Failed;
        state.error = Some(error);
        self.completions += 1;
        state.finished_seq = self.completions;
        self.update_context(i);
        self.emit_step_finished(i);
        self.failed(i);
        self.release(i);
    }

    pub(super) fn skip(&mut self, i: usize, reason: String) {
        // A whole phase is skipped in file order: a step may have been made
        // ready by the skip of its need just before; it must not be decided
        // (and reported) a second time.
        self.ready.remove(&i);
        let state = &mut self.states[i];
        state.status = StepStatus::Skipped;
        state.reason = Some(reason.clone());
        self.update_context(i);
        let mut event = Event::new(EventKind::StepSkipped, &self.options.run_id);
        event.step = Some(self.nodes[i].step.id.value.clone());
        event.phase = Some(self.nodes[i].phase);
        event.status = Some(EventStatus::Skipped);
        event.reason = Some(reason);
        event.outputs = Some(Outputs::new());
        self.emit(event);
        self.release(i);
    }

    /// A step is terminal: its dependents have one need fewer to wait for.
    pub(super) fn release(&mut self, i: usize) {
        for d in self.nodes[i].dependents.clone() {
            let state = &mut self.states[d];
            state.waiting = state.waiting.saturating_sub(1);
            if state.waiting == 0 && state.status == StepStatus::Pending {
                self.ready.insert(d);
            }
        }
    }

    pub(super) fn emit_step_finished(&mut self, i: usize) {
        let state = &self.states[i];
        let mut event = Event::new(EventKind::StepFinished, &self.options.run_id);
        event.step = Some(self.nodes[i].step.id.value.clone());
        event.phase = Some(self.nodes[i].phase);
        event.status = state.status.event_status();
        event.attempts = Some(state.attempts);
        event.attempt = (state.attempts > 0).then_some(state.attempts);
        event.duration_ms = Some(millis(state.duration));
        event.error = state.error.clone();
        event.reason = state.reason.clone();
        event.would_run = state.would_run.clone();
        event.outputs = Some(self.take_outputs(i));
        let outputs = self.emit_lent(event);
        self.set_outputs(i, outputs);
    }
}

/// Why the run stops when step `id` fails: also what the run directory's
/// `stopping` file says, by which a resume knows which step it was.
pub(super) fn failure_reason(id: &str) -> String {
    format!("step `{id}` failed")
}
