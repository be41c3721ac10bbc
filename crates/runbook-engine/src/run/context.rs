//! The template context: what `params`, `env`, `run` and `steps.ID` hold
//! for each attempt, and which steps' entries an attempt needs to see.

use super::*;

impl Dispatcher<'_> {
    /// The context without any step entries (`steps` is empty), built once.
    pub(super) fn base_context(&mut self) -> &Arc<Value> {
        let context = &self.context;
        self.base_context.get_or_insert_with(|| {
            let mut base = context.clone();
            if let Some(steps) = base.get_mut("steps").and_then(Value::as_object_mut) {
                steps.clear();
            }
            Arc::new(base)
        })
    }

    pub(super) fn snapshot(&mut self) -> Arc<Value> {
        self.snapshot
            .get_or_insert_with(|| Arc::new(self.context.clone()))
            .clone()
    }

    /// The template context an attempt of `step` renders against: params,
    /// env and run, and only the `steps.X` its templates read. Copying every
    /// step's outputs for every attempt made long runbooks quadratic (a
    /// 10,000-step run spent most of its time cloning the context).
    pub(super) fn context_for(&mut self, step: &Step) -> Arc<Value> {
        let reads = self
            .reads
            .entry(step.id.value.clone())
            .or_insert_with(|| steps_read(step))
            .clone();
        let Some(reads) = reads else {
            return self.snapshot();
        };
        if reads.is_empty() {
            // Only `steps` changes while a phase runs, so every step that
            // reads no step outputs (most of them) shares one context instead of
            // copying `params`, the whole `env` and `run` at each start.
            return self.base_context().clone();
        }
        let mut context = serde_json::Map::new();
        if let Value::Object(all) = &self.context {
            for (key, value) in all {
                if key == "steps" {
                    let mut steps = serde_json::Map::new();
                    if let Value::Object(entries) = value {
                        for id in &reads {
                            if let Some(entry) = entries.get(id) {
                                steps.insert(id.clone(), entry.clone());
                            }
                        }
                    }
                    context.insert(key.clone(), Value::Object(steps));
                } else {
                    context.insert(key.clone(), value.clone());
                }
            }
        }
        Arc::new(Value::Object(context))
    }

    /// Step `i`'s outputs, as its templates see them.
    pub(super) fn outputs(&self, i: usize) -> &Outputs {
        static NONE: std::sync::LazyLock<Outputs> = std::sync::LazyLock::new(Outputs::new);
        match self.context["steps"][&self.nodes[i].step.id.value]["outputs"] {
            Value::Object(ref outputs) => outputs,
            _ => &NONE,
        }
    }

    /// Takes step `i`'s outputs out of the template context, to be put
    /// back with [`Self::set_outputs`].
    pub(super) fn take_outputs(&mut self, i: usize) -> Outputs {
        self.snapshot = None;
        match self
            .context
            .get_mut("steps")
            .and_then(|steps| steps.get_mut(&self.nodes[i].step.id.value))
            .and_then(|entry| entry.get_mut("outputs"))
        {
            Some(Value::Object(outputs)) => std::mem::take(outputs),
            _ => Outputs::new(),
        }
    }

    /// Makes `outputs` step `i`'s, in the template context (see `State`).
    pub(super) fn set_outputs(&mut self, i: usize, outputs: Outputs) {
        self.snapshot = None;
        let id = &self.nodes[i].step.id.value;
        if let Some(Value::Object(entry)) = self
            .context
            .get_mut("steps")
            .and_then(Value::as_object_mut)
            .and_then(|steps| steps.get_mut(id))
        {
            entry.insert("outputs".to_string(), Value::Object(outputs));
        }
    }

    pub(super) fn update_context(&mut self, i: usize) {
        self.snapshot = None;
        let state = &self.states[i];
        let id = &self.nodes[i].step.id.value;
        if let Some(steps) = self.context.get_mut("steps").and_then(Value::as_object_mut) {
            // Every step has an entry from the start (pending): it is
            // rewritten in place rather than rebuilt, which spared a map,
            // its eight keys and the old entry's teardown at every step.
            match steps.get_mut(id) {
                Some(Value::Object(entry)) => fill_step_context(entry, state),
                _ => {
                    steps.insert(id.clone(), step_context(state));
                }
            }
        }
    }
}

/// `steps.ID` in the template context.
///
/// Built entry by entry rather than with `json!`, which passes each value
/// through `serde_json::to_value`: that re-serialized a step's outputs (its
/// captured stdout, stderr and lines) twice per step where a clone will do.
pub(super) fn step_context(state: &State) -> Value {
    let mut entry = Map::with_capacity(8);
    fill_step_context(&mut entry, state);
    Value::Object(entry)
}

/// Writes what templates see of a step (`steps.ID.*`) into its entry,
/// reusing the keys already there.
pub(super) fn fill_step_context(entry: &mut Map<String, Value>, state: &State) {
    let mut set = |key: &str, value: Value| match entry.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            entry.insert(key.to_string(), value);
        }
    };
    set("status", Value::from(state.status.as_str()));
    set(
        "succeeded",
        Value::Bool(state.status == StepStatus::Succeeded),
    );
    set("failed", Value::Bool(state.status == StepStatus::Failed));
    set("skipped", Value::Bool(state.status == StepStatus::Skipped));
    set(
        "error",
        state.error.clone().map_or(Value::Null, Value::String),
    );
    set("attempts", Value::from(state.attempts));
    set("duration_ms", Value::from(millis(state.duration)));
    // Set by `Dispatcher::set_outputs` once the step has some.
    if !entry.contains_key("outputs") {
        entry.insert("outputs".to_string(), Value::Object(Map::new()));
    }
}

pub(super) fn initial_context(runbook: &Runbook, options: &RunOptions, nodes: &[Node]) -> Value {
    let params: Map<String, Value> = options
        .params
        .iter()
        .map(|(name, p)| (name.clone(), p.value.to_json()))
        .collect();
    let env: Map<String, Value> = options
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let pending = step_context(&State::pending(0, 0));
    let steps: Map<String, Value> = nodes
        .iter()
        .map(|n| (n.step.id.value.clone(), pending.clone()))
        .collect();
    // The maps are moved in: `json!` would serialize them into copies.
    let mut context = Map::with_capacity(4);
    context.insert("params".into(), Value::Object(params));
    context.insert("env".into(), Value::Object(env));
    context.insert("steps".into(), Value::Object(steps));
    context.insert(
        "run".into(),
        json!({
            "id": options.run_id,
            "name": runbook.name.value,
            "started_at": now_rfc3339(),
            "dry_run": options.dry_run,
            "status": "running",
            "error": null,
        }),
    );
    Value::Object(context)
}

/// Which `steps.X` the templates of `step` read; `None` when one reads
/// `steps` whole (or does not parse, which validation already reported).
pub(super) fn steps_read(step: &Step) -> Option<Vec<String>> {
    steps_read_where(step, |_| true)
}

/// The steps whose outputs `step` reads (`steps.X.outputs…`, or the whole
/// `steps.X`); `None` when it may read any (see [`steps_read`]).
pub(super) fn outputs_read(step: &Step) -> Option<Vec<String>> {
    steps_read_where(step, |rest| {
        rest.first().is_none_or(|field| field == "outputs")
    })
}

/// The steps `step` reads a path of, past `steps.ID`, that `counts`.
pub(super) fn steps_read_where(
    step: &Step,
    counts: impl Fn(&[String]) -> bool,
) -> Option<Vec<String>> {
    let mut texts: Vec<String> = step
        .templates()
        .into_iter()
        .map(|(_, t)| t.text.clone())
        .collect();
    for (_, tree) in step.template_trees() {
        tree.for_each_string(&mut |_, text| texts.push(text.to_string()));
    }
    let mut reads = BTreeSet::new();
    for text in texts.iter().filter(|t| t.contains("{{")) {
        let analysis = runbook_model::template::analyze(text).ok()?;
        for variable in analysis.variables {
            match variable.path.as_slice() {
                [root, id, rest @ ..] if root == "steps" && counts(rest) => {
                    reads.insert(id.clone());
                }
                [root] if root == "steps" => return None,
                _ => {}
            }
        }
        // `lookup steps ...` and friends can reach any step by name.
        if analysis.helpers.iter().any(|h| h == "lookup") {
            return None;
        }
    }
    Some(reads.into_iter().collect())
}
