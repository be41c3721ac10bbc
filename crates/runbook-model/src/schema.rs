//! The JSON Schema of the runbook format, generated from the model types so
//! that it cannot drift from what the validator accepts. Editors (through
//! yaml-language-server) use it for completion and hover documentation.
//!
//! schemars describes each struct; this module assembles the step schema,
//! where every step type is one alternative holding the common fields plus
//! its own, discriminated by `type`, with unknown keys rejected.

use crate::lower::{COMMON_KEYS, GATE_KEYS, HTTP_KEYS, KUBECTL_KEYS, SHELL_KEYS, SIGNALS};
use crate::model::{
    GateStep, HttpCheckStep, KubectlAction, KubectlStep, ParamType, Retry, Runbook, ShellStep,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

const STEP_ID_PATTERN: &str = "^[a-z][a-z0-9_-]*$";
const PARAM_PATTERN: &str = "^[a-z_][a-z0-9_]*$";
const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// A string holding a template, which `validate` checks and the schema
/// cannot.
const TEMPLATE_PATTERN: &str = "\\{\\{";
/// The units `parse_duration` takes (humantime's, without `M`, which would
/// be a month).
const DURATION_UNITS: &str = "(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|years|year|yrs|yr|y)";

/// The schema of the whole format, as printed by `runbook schema`.
pub fn runbook_schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<Runbook>();
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "$id".into(),
            json!("https://runbook.dev/schemas/runbook.schema.json"),
        );
        object.insert(
            "description".into(),
            json!("A runbook for the `runbook` engine: a DAG of typed steps (shell, http-check, kubectl-action, gate) with params, retries, gates and rollbacks."),
        );
        set_required(object, &["version", "name", "steps"]);
        if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
            for (key, pattern) in [
                ("steps", STEP_ID_PATTERN),
                ("on_failure", STEP_ID_PATTERN),
                ("finally", STEP_ID_PATTERN),
                ("params", PARAM_PATTERN),
            ] {
                if let Some(map) = properties.get_mut(key).and_then(Value::as_object_mut) {
                    map.insert("propertyNames".into(), json!({"pattern": pattern}));
                    if key == "steps" {
                        map.insert("minProperties".into(), json!(1));
                    }
                }
            }
        }
    }
    // Optional-by-default: schemars marks non-`Option` fields as required,
    // but in the file only the fields listed explicitly are.
    if let Some(definitions) = value.get_mut("definitions").and_then(Value::as_object_mut) {
        for (name, definition) in definitions.iter_mut() {
            if let Some(object) = definition.as_object_mut()
                && matches!(name.as_str(), "Param" | "Defaults" | "Retry" | "Expect")
            {
                set_required(object, &[]);
            }
        }
        if let Some(param) = definitions.get_mut("Param").and_then(Value::as_object_mut) {
            param.insert("allOf".into(), param_value_rules());
        }
    }
    // schemars lets every `Option` field be `null`; the validator does not
    // (`description:` with nothing after it is a mistake, RB103), so the
    // schema must not either.
    strip_null(&mut value);
    // The few places where an empty value means "none" to the validator.
    for pointer in [
        "/properties/on_failure",
        "/properties/finally",
        "/definitions/Param",
    ] {
        if let Some(object) = value.pointer_mut(pointer).and_then(Value::as_object_mut) {
            object.insert("type".into(), json!(["object", "null"]));
        }
    }
    value
}

/// Removes `null` from every `type` list and `anyOf` alternative.
fn strip_null(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    object.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(alternatives)) = object.get_mut("anyOf") {
                alternatives.retain(|a| a != &json!({"type": "null"}));
                if alternatives.len() == 1 {
                    let only = alternatives.remove(0);
                    object.remove("anyOf");
                    match only {
                        Value::Object(inner) if !inner.contains_key("$ref") => {
                            for (key, schema) in inner {
                                object.entry(key).or_insert(schema);
                            }
                        }
                        other => {
                            object.insert("allOf".into(), json!([other]));
                        }
                    }
                }
            }
            object.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// A param's `default` and `allowed` values have the param's type
/// (`string` when it has none).
fn param_value_rules() -> Value {
    let rule = |kind: ParamType, json_type: &str| {
        let condition = if kind == ParamType::String {
            json!({"anyOf": [
                {"not": {"required": ["type"]}},
                {"properties": {"type": {"const": "string"}}}
            ]})
        } else {
            json!({"properties": {"type": {"const": kind.as_str()}}, "required": ["type"]})
        };
        json!({
            "if": condition,
            "then": {"properties": {
                "default": {"type": json_type},
                "allowed": {"items": {"type": json_type}}
            }}
        })
    };
    json!([
        rule(ParamType::String, "string"),
        rule(ParamType::Integer, "integer"),
        rule(ParamType::Number, "number"),
        rule(ParamType::Boolean, "boolean"),
    ])
}

/// What the validator checks per kubectl action: the fields each action
/// requires, the action-specific fields it takes (another action's are
/// refused), the one object (`kind/name`) that acting on a single object
/// needs, and `rollback: auto` only where the action has an inverse.
fn kubectl_action_rules(rollback: bool) -> Value {
    let action_specific: Vec<&str> = KubectlAction::ALL
        .iter()
        .flat_map(|a| a.extra_fields().iter().copied())
        .fold(Vec::new(), |mut all, field| {
            if !all.contains(&field) {
                all.push(field);
            }
            all
        });
    let mut rules: Vec<Value> = KubectlAction::ALL
        .iter()
        .map(|&action| {
            let mut properties = Map::new();
            for field in &action_specific {
                if !action.extra_fields().contains(field) {
                    properties.insert((*field).into(), json!(false));
                }
            }
            if action == KubectlAction::Top {
                properties.insert(
                    "resource".into(),
                    json!({
                        "pattern": format!("^([pP][oO]([dD][sS]?)?|[nN][oO]([dD][eE][sS]?)?)(\\.[^/\\s]*)?(/[^/\\s]*)?$|{TEMPLATE_PATTERN}"),
                        "patternErrorMessage": "`top` works on pods or nodes: `pods`, `nodes`, `pod/NAME` or `node/NAME`",
                    }),
                );
            }
            if action.needs_one_object() {
                properties.insert(
                    "resource".into(),
                    json!({
                        "pattern": format!("^\\s*[^/\\s]+\\s*/\\s*[^/\\s]+\\s*$|{TEMPLATE_PATTERN}"),
                        "patternErrorMessage": format!("`{}` works on one object, as `kind/name`, such as `deployment/prod-omendb`", action.as_str()),
                    }),
                );
            }
            if !rollback && !action.has_inverse() {
                properties.insert(
                    "rollback".into(),
                    json!({"$ref": "#/definitions/RollbackStep"}),
                );
            }
            let mut then = json!({"properties": properties});
            let mut required: Vec<&str> = action.required_fields().to_vec();
            if action.needs_one_object() || action == KubectlAction::Get {
                required.push("resource");
            }
            if !required.is_empty() {
                then["required"] = json!(required);
            }
            if action == KubectlAction::Logs {
                then["anyOf"] = json!([{"required": ["resource"]}, {"required": ["selector"]}]);
            }
            if action == KubectlAction::Patch {
                then["if"] = json!({"properties": {"patch_type": {"const": "json"}}, "required": ["patch_type"]});
                then["then"] = json!({"properties": {"patch": {"type": ["array", "string"]}}});
                then["else"] = json!({"properties": {"patch": {"type": ["object", "string"]}}});
            }
            json!({
                "if": {"properties": {"action": {"const": action.as_str()}}},
                "then": then,
            })
        })
        .collect();
    // A selector next to one named object would not filter it.
    rules.push(json!({
        "if": {"properties": {"resource": {"pattern": "^(?!.*\\{\\{).*/"}}, "required": ["resource"]},
        "then": {"not": {"anyOf": [{"required": ["selector"]}, {"required": ["field_selector"]}]}},
    }));
    Value::Array(rules)
}

fn set_required(object: &mut Map<String, Value>, required: &[&str]) {
    if required.is_empty() {
        object.remove("required");
    } else {
        object.insert("required".into(), json!(required));
    }
}

fn kind_schema<T: JsonSchema>(
    generator: &mut SchemaGenerator,
    type_name: &str,
    description: &str,
    own_keys: &[&str],
    required: &[&str],
    rollback: bool,
) -> Value {
    let own = T::json_schema(generator).to_value();
    let mut properties = Map::new();
    properties.insert(
        "type".into(),
        json!({"const": type_name, "description": description}),
    );
    let common = common_properties(generator, rollback);
    for (key, schema) in common {
        properties.insert(key, schema);
    }
    if let Some(own_props) = own.get("properties").and_then(Value::as_object) {
        for (key, schema) in own_props {
            properties.insert(key.clone(), schema.clone());
        }
    }
    debug_assert!(own_keys.iter().all(|k| properties.contains_key(*k)));
    // Only kubectl actions can have `rollback: auto`.
    if type_name != "kubectl-action" && properties.contains_key("rollback") {
        properties.insert(
            "rollback".into(),
            json!({
                "description": "What undoes this step if the run fails: a step without `needs`, `when` or `rollback` (`auto` is only for kubectl scale, patch and rollout-restart).",
                "allOf": [{"$ref": "#/definitions/RollbackStep"}]
            }),
        );
    }
    let mut all_required = vec!["type"];
    all_required.extend_from_slice(required);
    let mut schema = json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": all_required,
        "additionalProperties": false,
    });
    match type_name {
        "kubectl-action" => schema["allOf"] = kubectl_action_rules(rollback),
        "http-check" => schema["not"] = json!({"required": ["body", "json"]}),
        _ => {}
    }
    schema
}

fn common_properties(generator: &mut SchemaGenerator, rollback: bool) -> Vec<(String, Value)> {
    let retry = generator.subschema_for::<Retry>().to_value();
    let duration = TimeoutText::json_schema(generator).to_value();
    let mut out = vec![
        (
            "description",
            json!({"type": "string", "description": "Free text shown in plans and reports."}),
        ),
        (
            "timeout",
            merge_description(
                duration,
                "Per-attempt timeout, such as `30s` (default: `defaults.timeout`, else `10m`; gates `30m`).",
            ),
        ),
        (
            "retry",
            merge_description(
                retry,
                "Retry policy: `{attempts, delay, backoff, max_delay}`.",
            ),
        ),
        (
            "continue_on_failure",
            json!({"type": "boolean", "description": "A failure of this step does not fail the run; later steps can test `steps.ID.failed`."}),
        ),
        (
            "env",
            merge_description(
                EnvMap::json_schema(generator).to_value(),
                "Extra environment variables for shell steps (values are templates).",
            ),
        ),
        (
            "idempotent",
            json!({"type": "boolean", "description": "Default `true`. `false` makes `runbook resume` ask a person whether an interrupted run of this step completed, instead of running it again."}),
        ),
    ];
    if !rollback {
        out.push(("needs", json!({
            "description": "Step id, or list of step ids, in the same map that must finish first.",
            "oneOf": [
                {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"},
                {"type": "array", "items": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}}
            ]
        })));
        out.push((
            "when",
            merge_description(
                BoolOrTemplate::json_schema(generator).to_value(),
                "Template that must render to `true` or `false` (or the boolean itself: `when: false` switches a step off); it alone decides whether the step runs, even after a failure or skip.",
            ),
        ));
        out.push(("rollback", json!({
            "description": "What undoes this step if the run fails: `auto` (kubectl scale, patch, rollout-restart) or a step without `needs`, `when` or `rollback`.",
            "oneOf": [
                {"const": "auto"},
                {"$ref": "#/definitions/RollbackStep"}
            ]
        })));
    }
    out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn merge_description(mut schema: Value, description: &str) -> Value {
    if let Some(object) = schema.as_object_mut() {
        if object.contains_key("$ref") {
            return json!({"allOf": [schema], "description": description});
        }
        object.insert("description".into(), json!(description));
    }
    schema
}

fn step_alternatives(generator: &mut SchemaGenerator, rollback: bool) -> Vec<Value> {
    let _ = COMMON_KEYS;
    vec![
        kind_schema::<ShellStep>(
            generator,
            "shell",
            "Runs a script in its own process group; output is streamed live and captured.",
            SHELL_KEYS,
            &["run"],
            rollback,
        ),
        kind_schema::<HttpCheckStep>(
            generator,
            "http-check",
            "Makes an HTTP request and checks status, body, JSON and latency.",
            HTTP_KEYS,
            &["url"],
            rollback,
        ),
        kind_schema::<KubectlStep>(
            generator,
            "kubectl-action",
            "A kubectl operation done directly through the Kubernetes API.",
            KUBECTL_KEYS,
            &["action"],
            rollback,
        ),
        kind_schema::<GateStep>(
            generator,
            "gate",
            "Waits for approval by a person, or decides by a condition.",
            GATE_KEYS,
            &["message"],
            rollback,
        ),
    ]
}

/// Schema-only type: a step of any type.
pub struct StepSchema;

impl JsonSchema for StepSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        // Registering the rollback variant here puts it in `definitions`
        // exactly once, referenced from every step's `rollback`.
        generator.subschema_for::<RollbackStepSchema>();
        let alternatives = step_alternatives(generator, false);
        json_schema!({
            "description": "A step. `type` selects the kind: shell, http-check, kubectl-action or gate.",
            "type": "object",
            "required": ["type"],
            "oneOf": alternatives,
        })
    }
}

/// Schema-only type: a rollback step.
pub struct RollbackStepSchema;

impl JsonSchema for RollbackStepSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RollbackStep".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let alternatives = step_alternatives(generator, true);
        json_schema!({
            "description": "A rollback step: any step type, without `needs`, `when` or `rollback`.",
            "type": "object",
            "required": ["type"],
            "oneOf": alternatives,
        })
    }
}

/// A duration pattern: numbers with units, the total not zero when
/// `nonzero`.
fn duration_pattern(nonzero: bool) -> String {
    let piece = format!("[0-9]+(\\.[0-9]+)?\\s*{DURATION_UNITS}\\s*");
    let all_zero = format!("\\s*(0+(\\.0+)?\\s*{DURATION_UNITS}\\s*)+$");
    let not_zero = if nonzero {
        format!("(?!{all_zero})")
    } else {
        String::new()
    };
    format!("^{not_zero}\\s*({piece})+$")
}

fn duration_schema(nonzero: bool, templated: bool, description: &str) -> Schema {
    let literal = duration_pattern(nonzero);
    let (pattern, template) = if templated {
        (format!("{literal}|{TEMPLATE_PATTERN}"), ", or a template")
    } else {
        (literal, "")
    };
    let zero = if nonzero { ", above zero" } else { "" };
    Schema::try_from(json!({
        "type": "string",
        "description": description,
        "pattern": pattern,
        // yaml-language-server shows this instead of the pattern.
        "patternErrorMessage": format!("a duration with units{zero}, such as `30s`, `5m` or `1h30m` (units: ms, s, m, h, d, w, month, y){template}"),
    }))
    .unwrap_or_default()
}

/// Declares a schema-only duration type: its definition name, whether zero
/// is refused, and whether a template may stand in for it.
macro_rules! duration_type {
    ($(#[$doc:meta])* $type:ident, $name:literal, nonzero: $nonzero:expr, templated: $templated:expr, $description:literal) => {
        $(#[$doc])*
        pub struct $type;

        impl JsonSchema for $type {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                duration_schema($nonzero, $templated, $description)
            }
        }
    };
}

duration_type!(
    /// Schema-only type: a duration, or a template rendering to one.
    DurationText, "Duration", nonzero: false, templated: true,
    "A duration with units, such as `500ms`, `30s`, `5m` or `1h30m` (a bare number is ambiguous and rejected), or a template rendering to one."
);
duration_type!(
    /// Schema-only type: a step's timeout, not zero, or a template.
    TimeoutText, "Timeout", nonzero: true, templated: true,
    "A duration other than zero, such as `30s`, `5m` or `1h30m`, or a template rendering to one."
);
duration_type!(
    /// Schema-only type: a duration written out, read before any template
    /// context exists (retry delays).
    LiteralDuration, "LiteralDuration", nonzero: false, templated: false,
    "A duration with units, such as `500ms`, `30s` or `5m`; not a template."
);
duration_type!(
    /// Schema-only type: a timeout written out (the run's and the default
    /// step timeout), not zero.
    LiteralTimeout, "LiteralTimeout", nonzero: true, templated: false,
    "A duration other than zero, such as `30m`; not a template."
);

/// Schema-only type: environment variables (values are templates, and may
/// be written unquoted).
pub struct EnvMap;

impl JsonSchema for EnvMap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnvMap".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        })
    }
}

/// Schema-only type: a program and its arguments (numbers are taken as
/// text, as in `[sleep, 5]`).
pub struct Argv;

impl JsonSchema for Argv {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Argv".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let word = json!({"type": ["string", "number", "boolean"]});
        json_schema!({
            "type": "array",
            "minItems": 1,
            // The program: not blank.
            "items": [{"anyOf": [{"type": "string", "pattern": "\\S"}, {"type": ["number", "boolean"]}]}],
            "additionalItems": word,
        })
    }
}

/// Schema-only type: exit codes, one or a list.
pub struct ExitCodes;

impl JsonSchema for ExitCodes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExitCodes".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let code = json!({"type": "integer", "minimum": 0, "maximum": 255});
        json_schema!({"anyOf": [code, {"type": "array", "minItems": 1, "items": code}]})
    }
}

/// Schema-only type: expected values keyed by JSON Pointer.
pub struct PointerMap;

impl JsonSchema for PointerMap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PointerMap".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "object", "propertyNames": {"pattern": "^(/.*)?$"}})
    }
}

/// Schema-only type: a patch document.
pub struct PatchDocument;

impl JsonSchema for PatchDocument {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PatchDocument".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["object", "array", "string"]})
    }
}

/// Schema-only type: a stop signal name.
pub struct SignalName;

impl JsonSchema for SignalName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Signal".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<String> = SIGNALS
            .iter()
            .flat_map(|s| [s.to_string(), s.trim_start_matches("SIG").to_string()])
            .collect();
        json_schema!({"anyOf": [
            {"type": "string", "enum": names},
            {"type": "string", "pattern": "\\{\\{"},
        ]})
    }
}

/// One of a few words, each with its description, or a template rendering
/// to one of them.
fn choice_or_template(description: &str, choices: &[(&str, &str)]) -> Schema {
    let mut any_of: Vec<serde_json::Value> = choices
        .iter()
        .map(|(word, what)| serde_json::json!({"type": "string", "const": word, "description": what}))
        .collect();
    any_of.push(serde_json::json!({
        "type": "string",
        "pattern": TEMPLATE_PATTERN,
        "description": "A template rendering to one of these.",
    }));
    json_schema!({"description": description, "anyOf": any_of})
}

/// Schema-only type: a `patch_type`, or a template rendering to one.
pub struct PatchTypeOrTemplate;

impl JsonSchema for PatchTypeOrTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PatchType".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        choice_or_template(
            "How a `patch` document is applied.",
            &[
                (
                    "strategic",
                    "Kubernetes strategic merge patch (lists merged by key).",
                ),
                ("merge", "RFC 7386 JSON merge patch."),
                ("json", "RFC 6902 JSON patch (a list of operations)."),
            ],
        )
    }
}

/// Schema-only type: a gate's `on_timeout`, or a template rendering to one.
pub struct OnTimeoutOrTemplate;

impl JsonSchema for OnTimeoutOrTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OnTimeout".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        choice_or_template(
            "What a gate does when its timeout passes.",
            &[
                ("reject", "Reject (the gate fails)."),
                ("approve", "Approve."),
            ],
        )
    }
}

/// Schema-only type: text written as a string, number or boolean
/// (environment values and headers are often written unquoted).
pub struct ScalarText;

impl JsonSchema for ScalarText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ScalarText".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// Schema-only type: a boolean, or a template rendering to one.
pub struct BoolOrTemplate;

impl JsonSchema for BoolOrTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BoolOrTemplate".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"anyOf": [
            {"type": "boolean"},
            {"type": "string", "pattern": format!("^\\s*(true|false)\\s*$|{TEMPLATE_PATTERN}")},
        ]})
    }
}

fn int_schema(minimum: i64, quoted: &str) -> Schema {
    json_schema!({"anyOf": [
        {"type": "integer", "minimum": minimum},
        {"type": "string", "pattern": format!("^\\s*({quoted})\\s*$|{TEMPLATE_PATTERN}")},
    ]})
}

/// Schema-only type: a count (0 or more), also quoted, or a template
/// rendering to one.
pub struct CountOrTemplate;

impl JsonSchema for CountOrTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CountOrTemplate".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_schema(0, "\\+?[0-9]+")
    }
}

/// Schema-only type: a number of log lines (`-1` for all), also quoted, or
/// a template rendering to one.
pub struct TailLines;

impl JsonSchema for TailLines {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TailLines".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_schema(-1, "\\+?[0-9]+|-0*1")
    }
}

/// Schema-only type: one string or a list of strings.
pub struct OneOrMany;

impl JsonSchema for OneOrMany {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OneOrMany".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"anyOf": [
            {"type": "string"},
            {"type": "array", "minItems": 1, "items": {"type": "string"}},
        ]})
    }
}

/// Schema-only type: accepted HTTP statuses.
pub struct StatusSchema;

impl JsonSchema for StatusSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusExpectation".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let one = json!({"anyOf": [
            {"type": "integer", "minimum": 100, "maximum": 599},
            {"type": "string", "pattern": "^([1-5][0-9][0-9]|[1-5][xX][xX])$"}
        ]});
        let template = json!({"type": "string", "pattern": "\\{\\{"});
        json_schema!({
            "description": "A status code (`200`), a class (`2xx`), or a list of them; or a template rendering to one of them, or to several separated by commas.",
            "anyOf": [one, {"type": "array", "items": one, "minItems": 1}, template]
        })
    }
}

/// The schema of `version`.
pub fn version_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"const": 1, "description": "Format version; must be the integer `1`."})
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_field_has_a_description() {
        let schema = super::runbook_schema();
        let mut missing = Vec::new();
        walk(&schema, "", &mut missing);
        assert!(
            missing.is_empty(),
            "properties without a description: {missing:#?}"
        );
    }

    fn walk(value: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = value.get("properties").and_then(|p| p.as_object()) {
            for (key, prop) in props {
                let has = prop.get("description").is_some() || prop.get("$ref").is_some();
                if !has {
                    missing.push(format!("{path}/{key}"));
                }
            }
        }
        match value {
            serde_json::Value::Object(map) => {
                // Conditions only narrow fields described where they are
                // declared.
                for (k, v) in map
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "if" | "then" | "else"))
                {
                    walk(v, &format!("{path}/{k}"), missing);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}/{i}"), missing);
                }
            }
            _ => {}
        }
    }
}
