//! The step's fields, rendered for one attempt (templates expanded, typed
//! fields parsed, a string `patch` parsed as JSON).

use runbook_engine::{StepContext, StepFailure};
use runbook_model::{KubectlAction, KubectlStep, PatchType, Template};
use serde_json::Value;
use std::time::Duration;

/// Rendered fields of a `kubectl-action` step.
#[derive(Debug, Clone)]
pub struct Fields {
    /// The action.
    pub action: KubectlAction,
    /// `namespace`.
    pub namespace: Option<String>,
    /// `context`.
    pub context: Option<String>,
    /// `kubeconfig`.
    pub kubeconfig: Option<String>,
    /// `resource`.
    pub resource: Option<String>,
    /// `selector`.
    pub selector: Option<String>,
    /// `field_selector`.
    pub field_selector: Option<String>,
    /// `dry_run` on the step (the run's `--dry-run` is separate).
    pub dry_run: bool,
    /// `container`.
    pub container: Option<String>,
    /// `tail`.
    pub tail: Option<i64>,
    /// `since`.
    pub since: Option<Duration>,
    /// `for`.
    pub for_resource: Option<String>,
    /// `replicas`.
    pub replicas: Option<i64>,
    /// `to_revision`.
    pub to_revision: Option<i64>,
    /// `patch`, as JSON.
    pub patch: Option<Value>,
    /// `patch_type` (default strategic).
    pub patch_type: PatchType,
    /// `command`.
    pub command: Vec<String>,
}

fn text(
    ctx: &StepContext,
    field: &str,
    t: &Option<Template>,
) -> Result<Option<String>, StepFailure> {
    match t {
        // An empty rendering (`{{params.selector}}` left blank) means "not set".
        Some(t) => Ok(Some(ctx.render(field, t)?).filter(|s| !s.trim().is_empty())),
        None => Ok(None),
    }
}

impl Fields {
    /// Renders every field of `step`.
    pub fn render(step: &KubectlStep, ctx: &StepContext) -> Result<Fields, StepFailure> {
        let patch = match &step.patch {
            None => None,
            Some(node) => Some(match ctx.render_document("patch", node)? {
                Value::String(s) => serde_json::from_str(&s).map_err(|e| {
                    StepFailure::new(format!("`patch` is a string but not valid JSON: {e}"))
                })?,
                other => other,
            }),
        };
        let command = match &step.command {
            Some(items) => items
                .iter()
                .map(|t| ctx.render("command", t))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let fields = Fields {
            action: step.action.value,
            namespace: text(ctx, "namespace", &step.namespace)?,
            context: text(ctx, "context", &step.context)?,
            kubeconfig: text(ctx, "kubeconfig", &step.kubeconfig)?,
            resource: text(ctx, "resource", &step.resource)?,
            selector: text(ctx, "selector", &step.selector)?,
            field_selector: text(ctx, "field_selector", &step.field_selector)?,
            dry_run: match &step.dry_run {
                Some(d) => ctx.render_typed("dry_run", d)?,
                None => false,
            },
            container: text(ctx, "container", &step.container)?,
            tail: step
                .tail
                .as_ref()
                .map(|t| ctx.render_typed("tail", t))
                .transpose()?,
            since: step
                .since
                .as_ref()
                .map(|t| ctx.render_typed("since", t))
                .transpose()?,
            for_resource: text(ctx, "for", &step.for_resource)?,
            replicas: step
                .replicas
                .as_ref()
                .map(|t| ctx.render_typed("replicas", t))
                .transpose()?,
            to_revision: step
                .to_revision
                .as_ref()
                .map(|t| ctx.render_typed("to_revision", t))
                .transpose()?,
            patch,
            patch_type: step
                .patch_type
                .as_ref()
                .map(|t| ctx.render_typed("patch_type", t))
                .transpose()?
                .unwrap_or(PatchType::Strategic),
            command,
        };
        fields.refuse_selector_on_named_object()?;
        fields.refuse_replicas_out_of_range()?;
        Ok(fields)
    }

    /// A rendered `replicas` beyond what Kubernetes stores would be refused
    /// by the API server with a decoding error that does not name the field.
    fn refuse_replicas_out_of_range(&self) -> Result<(), StepFailure> {
        match self.replicas {
            Some(n) if !runbook_model::REPLICAS.contains(&n) => {
                Err(StepFailure::permanent(format!(
                    "`replicas` must be from 0 to {}, got {n}",
                    runbook_model::REPLICAS.end()
                )))
            }
            _ => Ok(()),
        }
    }

    /// A selector next to `kind/name` would be silently dropped, and a
    /// `delete` would remove the named object whatever its labels; kubectl
    /// refuses the combination, and so does this step.
    fn refuse_selector_on_named_object(&self) -> Result<(), StepFailure> {
        let Some(resource) = self.resource.as_deref().filter(|r| r.contains('/')) else {
            return Ok(());
        };
        let field = match (&self.selector, &self.field_selector) {
            (Some(_), _) => "selector",
            (None, Some(_)) => "field_selector",
            (None, None) => return Ok(()),
        };
        Err(StepFailure::new(format!(
            "`{field}` cannot be used with the named object `{resource}`: it would not filter it; name a kind such as `pods` to select, or drop `{field}`"
        )))
    }
}
