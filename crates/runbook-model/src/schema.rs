//! The JSON Schema of the runbook format, generated from the model types so
//! that it cannot drift from what the validator accepts. Editors (through
//! yaml-language-server) use it for completion and hover documentation.
//!
//! schemars describes each struct; this module assembles the step schema,
//! where every step type is one alternative holding the common fields plus
//! its own, discriminated by `type`, with unknown keys rejected.

use crate::lower::{COMMON_KEYS, GATE_KEYS, HTTP_KEYS, KUBECTL_KEYS, SHELL_KEYS, SIGNALS};
use crate::model::{GateStep, HttpCheckStep, KubectlStep, Retry, Runbook, ShellStep};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

const STEP_ID_PATTERN: &str = "^[a-z][a-z0-9_-]*$";
const PARAM_PATTERN: &str = "^[a-z_][a-z0-9_]*$";

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
    }
    value
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
    let mut all_required = vec!["type"];
    all_required.extend_from_slice(required);
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": all_required,
        "additionalProperties": false,
    })
}

fn common_properties(generator: &mut SchemaGenerator, rollback: bool) -> Vec<(String, Value)> {
    let retry = generator.subschema_for::<Retry>().to_value();
    let duration = DurationText::json_schema(generator).to_value();
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
            json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "Extra environment variables for shell steps (values are templates)."}),
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
                {"type": "array", "items": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}, "uniqueItems": true}
            ]
        })));
        out.push(("when", json!({"type": ["string", "boolean"], "description": "Template that must render to `true` or `false` (or the boolean itself: `when: false` switches a step off); it alone decides whether the step runs, even after a failure or skip."})));
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

/// Schema-only type: a duration string.
pub struct DurationText;

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration with units, such as `500ms`, `30s`, `5m` or `1h30m` (a bare number is ambiguous and rejected). May be a template.",
            "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+\\s*)+$|\\{\\{",
        })
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
        json_schema!({"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": "\\{\\{"}]})
    }
}

/// Schema-only type: an integer, or a template rendering to one.
pub struct IntOrTemplate;

impl JsonSchema for IntOrTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntOrTemplate".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "\\{\\{"}]})
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
        json_schema!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
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
                for (k, v) in map {
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
