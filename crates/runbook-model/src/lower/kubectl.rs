//! `type: kubectl-action` steps: the action, its target and its fields.

use super::*;

impl Lowerer<'_> {
    pub(super) fn kubectl(&mut self, node: &Node, what: &str) -> Option<KubectlStep> {
        let entries = node.as_map()?;
        let action_node = match node.get("action") {
            Some(a) => a,
            None => {
                self.missing(node, what, "action");
                return None;
            }
        };
        let names: Vec<&str> = KubectlAction::ALL.iter().map(|a| a.as_str()).collect();
        let Some(action) = KubectlAction::ALL
            .iter()
            .copied()
            .find(|a| action_node.as_str() == Some(a.as_str()))
        else {
            self.invalid_choice(action_node, "action", &names);
            return None;
        };
        let mut step = KubectlStep {
            action: Spanned::new(action, action_node.span),
            namespace: None,
            context: None,
            kubeconfig: None,
            resource: None,
            selector: None,
            field_selector: None,
            dry_run: None,
            container: None,
            tail: None,
            since: None,
            for_resource: None,
            replicas: None,
            to_revision: None,
            patch: None,
            patch_type: None,
            command: None,
        };
        // Whether a patch written as a JSON string holds a list.
        let mut patch_text_shape = None;
        let action_specific: IndexSet<&str> = KubectlAction::ALL
            .iter()
            .flat_map(|a| a.extra_fields().iter().copied())
            .collect();
        for entry in entries {
            let v = &entry.value;
            let key = entry.key.as_str();
            if action_specific.contains(key) && !action.extra_fields().contains(&key) {
                let users: Vec<&str> = KubectlAction::ALL
                    .iter()
                    .filter(|a| a.extra_fields().contains(&key))
                    .map(|a| a.as_str())
                    .collect();
                let d = self.error(
                    Code::FieldNotApplicable,
                    entry.key_span,
                    format!(
                        "field `{key}` does not apply to action `{}`",
                        action.as_str()
                    ),
                );
                d.label = Some("not used by this action".into());
                d.help = Some(format!("`{key}` is used by: {}", users.join(", ")));
                continue;
            }
            match key {
                "namespace" => step.namespace = self.filled_template(v, key),
                "context" => step.context = self.filled_template(v, key),
                "kubeconfig" => step.kubeconfig = self.filled_template(v, key),
                "resource" => step.resource = self.filled_template(v, key),
                "selector" => step.selector = self.filled_template(v, key),
                "field_selector" => step.field_selector = self.filled_template(v, key),
                "dry_run" => step.dry_run = self.typed_bool(v, key),
                "container" => step.container = self.filled_template(v, key),
                "tail" => step.tail = self.typed_int(v, key, -1..=i64::MAX),
                "since" => step.since = self.typed_duration(v, key),
                "for" => step.for_resource = self.filled_template(v, key),
                "replicas" => step.replicas = self.typed_int(v, key, crate::REPLICAS),
                "to_revision" => step.to_revision = self.typed_int(v, key, 0..=i64::MAX),
                "patch" => match &v.value {
                    Value::Map(_) | Value::Seq(_) => {
                        self.check_json_numbers(v, "patch");
                        step.patch = Some(v.clone());
                    }
                    Value::Str(s) => match serde_json::from_str::<serde_json::Value>(s) {
                        // A patch written as a JSON string, the way it is passed to `kubectl -p`.
                        Ok(parsed) => {
                            step.patch = Some(v.clone());
                            patch_text_shape = Some(parsed.is_array());
                        }
                        Err(e) if s.contains("{{") => {
                            let _ = e;
                            step.patch = Some(v.clone());
                        }
                        Err(e) => {
                            let d = self.error(
                                Code::InvalidValue,
                                v.span,
                                format!("`patch` is a string but not valid JSON: {e}"),
                            );
                            d.help = Some("write the patch as YAML, or as a JSON string".into());
                        }
                    },
                    _ => self.wrong_type(v, key, "a mapping (or a list for `patch_type: json`)"),
                },
                "patch_type" => {
                    step.patch_type = self.typed_choice(
                        v,
                        key,
                        &[
                            ("strategic", PatchType::Strategic),
                            ("merge", PatchType::Merge),
                            ("json", PatchType::Json),
                        ],
                    )
                }
                "command" => match &v.value {
                    Value::Str(_) => {
                        let d = self.error(
                            Code::WrongType,
                            v.span,
                            "`command` must be a list of arguments, found a string".into(),
                        );
                        d.help = Some("write it as a list, such as `[\"df\", \"-h\"]`; wrap shell syntax as `[\"sh\", \"-c\", \"...\"]`".into());
                    }
                    _ => {
                        step.command = self.template_list(v, key);
                        if step.command.as_deref().is_some_and(blank_program) {
                            let d = self.error(
                                Code::InvalidValue,
                                v.span,
                                "`command` names no program: it needs the program to run first"
                                    .into(),
                            );
                            d.help = Some("such as `[\"df\", \"-h\"]`".into());
                        }
                    }
                },
                _ => {}
            }
        }
        let needs_object = action.needs_one_object();
        for key in action.required_fields() {
            if node.get(key).is_none() {
                self.missing(node, &format!("{what} (action `{}`)", action.as_str()), key);
            }
        }
        match &step.resource {
            // Written, but not as usable text: that was said already.
            None if node.get("resource").is_some() => {}
            None if needs_object || matches!(action, KubectlAction::Get | KubectlAction::Exec) => {
                let d = self.error(
                    Code::MissingKey,
                    mapping_head(node),
                    format!(
                        "{what} (action `{}`) is missing the required field `resource`",
                        action.as_str()
                    ),
                );
                d.help = Some(if needs_object {
                    "name one object, such as `deployment/prod-omendb`".to_string()
                } else {
                    "such as `pods`, `nodes` or `deployment/prod-omendb`".to_string()
                });
            }
            None if action == KubectlAction::Logs && step.selector.is_none() => {
                let d = self.error(
                    Code::MissingKey,
                    mapping_head(node),
                    format!("{what} (action `logs`) needs a `resource` or a `selector`"),
                );
                d.help =
                    Some("for example `selector: app=omendb` or `resource: pod/omendb-0`".into());
            }
            Some(resource) if needs_object && !resource.is_templated() => {
                if !is_kind_slash_name(&resource.text) {
                    let d = self.error(
                        Code::InvalidValue,
                        resource.span,
                        format!(
                            "action `{}` needs one object as `kind/name`, found `{}`",
                            action.as_str(),
                            resource.text
                        ),
                    );
                    d.help = Some("such as `deployment/prod-omendb`".into());
                } else if action.as_str().starts_with("rollout") {
                    let kind = kind_of(&resource.text);
                    // `deployment`, `deploy`, `deployments`, each with an
                    // optional `.apps` or `.v1.apps`, as kubectl takes them.
                    let (name, group) = kind.split_once('.').unwrap_or((kind.as_str(), ""));
                    if !(matches!(name, "deployment" | "deployments" | "deploy")
                        && matches!(group, "" | "apps" | "v1.apps"))
                    {
                        let d = self.error(
                            Code::InvalidValue,
                            resource.span,
                            format!(
                                "action `{}` works on deployments, found `{kind}`",
                                action.as_str()
                            ),
                        );
                        d.help = Some("such as `deployment/prod-omendb`".into());
                    }
                }
            }
            _ => {}
        }
        if action == KubectlAction::Top
            && let Some(resource) = step.resource.as_ref().filter(|r| !r.is_templated())
        {
            let kind = kind_of(&resource.text);
            let name = kind.split('.').next().unwrap_or_default();
            if !matches!(name, "pod" | "pods" | "po" | "node" | "nodes" | "no") {
                let d = self.error(
                    Code::InvalidValue,
                    resource.span,
                    format!("action `top` works on pods or nodes, found `{kind}`"),
                );
                d.help = Some("such as `pods`, `pod/omendb-0` or `nodes`; for a deployment's pods, `pods` with a `selector`".into());
            }
        }
        if action == KubectlAction::Exec
            && let Some(Typed::Literal(dry_run)) = &step.dry_run
            && dry_run.value
        {
            let d = self.error(
                Code::InvalidValue,
                dry_run.span,
                "`dry_run: true` on an `exec` step means it never runs: exec has no server-side dry run".into(),
            );
            d.help = Some(
                "drop `dry_run`; `runbook run --dry-run` shows what the exec would run".into(),
            );
        }
        if action == KubectlAction::Logs
            && step.selector.is_some()
            && let Some(resource) = step
                .resource
                .as_ref()
                .filter(|r| !r.is_templated() && !r.text.contains('/'))
        {
            let kind = kind_of(&resource.text);
            if !matches!(kind.split('.').next(), Some("pod" | "pods" | "po")) {
                let d = self.error(
                    Code::InvalidValue,
                    resource.span,
                    format!(
                        "action `logs` with a `selector` reads the selected pods, not `{kind}`"
                    ),
                );
                d.help = Some("drop `resource` (or write `resource: pods`)".into());
            }
        }
        if let Some(target) = step.for_resource.as_ref().filter(|f| !f.is_templated())
            && !is_kind_slash_name(&target.text)
        {
            let d = self.error(
                Code::InvalidValue,
                target.span,
                format!(
                    "`for` must name one object as `kind/name`, found `{}`",
                    target.text.trim()
                ),
            );
            d.help = Some("such as `deployment/prod-omendb` or `pod/omendb-0`".into());
        }
        if let Some(resource) = step
            .resource
            .as_ref()
            .filter(|r| !r.is_templated() && r.text.contains('/'))
        {
            for (field, selector) in [
                ("selector", &step.selector),
                ("field_selector", &step.field_selector),
            ] {
                if let Some(selector) = selector {
                    let d = self.error(
                        Code::FieldNotApplicable,
                        selector.span,
                        format!("`{field}` cannot be used with the named object `{}`: it would not filter it", resource.text),
                    );
                    let kind = resource.text.split('/').next().unwrap_or_default();
                    d.help = Some(if needs_object {
                        format!("`{}` acts on one object; drop `{field}`", action.as_str())
                    } else if action == KubectlAction::Logs {
                        // A selector reads pods, whatever kind is named.
                        format!(
                            "to read the selected pods, drop `resource`; to read that one object's pod, drop `{field}`"
                        )
                    } else {
                        format!(
                            "to select, give only the kind (`resource: {kind}`); to act on that one object, drop `{field}`"
                        )
                    });
                }
            }
        }
        // A list is a `json` patch, and a `json` patch is a list, whether
        // written as YAML or as a JSON string.
        let patch_is_list = step.patch.as_ref().and_then(|p| match p.value {
            Value::Seq(_) => Some(true),
            Value::Map(_) => Some(false),
            _ => patch_text_shape,
        });
        if let Some(patch) = &step.patch
            && patch_is_list == Some(true)
            && step
                .patch_type
                .as_ref()
                .is_none_or(|t| t.literal().is_some_and(|t| *t != PatchType::Json))
        {
            let kind = step
                .patch_type
                .as_ref()
                .and_then(Typed::literal)
                .map_or("strategic", |t| t.as_str());
            let d = self.error(
                Code::WrongType,
                patch.span,
                format!("a list of operations is a `json` patch, but this patch is `{kind}`"),
            );
            d.label = Some("a list".into());
            d.help = Some("set `patch_type: json`, or write the patch as a mapping".into());
        }
        if let (Some(patch_type), Some(patch)) = (&step.patch_type, &step.patch)
            && patch_type.literal() == Some(&PatchType::Json)
            && patch_is_list == Some(false)
        {
            self.error(Code::WrongType, patch.span, "a `json` patch must be a list of operations, found a mapping".into())
                .help = Some("for example `[{op: replace, path: /spec/replicas, value: 3}]`, or use `patch_type: merge`".into());
        }
        Some(step)
    }
}

/// The kind part of a literal `resource` (`Deployment/x` → `deployment`),
/// lower-cased as kubectl matches kinds.
pub(super) fn kind_of(resource: &str) -> String {
    resource
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `kind/name`: one slash between two non-empty parts without spaces
/// (around them, spaces are trimmed, as the step does).
pub(super) fn is_kind_slash_name(text: &str) -> bool {
    text.split_once('/').is_some_and(|(kind, name)| {
        let part_ok = |p: &str| {
            let p = p.trim();
            !p.is_empty() && !p.contains('/') && !p.contains(char::is_whitespace)
        };
        part_ok(kind) && part_ok(name)
    })
}
