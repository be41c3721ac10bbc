//! The committed JSON Schema, checked by an independent validator (the
//! `jsonschema` crate, reading YAML through `serde-saphyr` rather than our own
//! parser): every runbook we ship passes it, and structurally broken
//! fixtures fail it.

mod common;
use common::repo_root;

use std::path::{Path, PathBuf};

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("schemas/runbook.schema.json"))
        .expect("schema committed");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft7::new(&schema).expect("schema compiles as draft 7")
}

fn yaml_as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn runbooks_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        // Kubernetes manifests live beside the runbook examples.
        if path.ends_with("k8s") {
            continue;
        }
        if path.is_dir() {
            runbooks_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn shipped_runbooks_pass_the_schema() {
    let validator = validator();
    let mut files = Vec::new();
    for dir in ["runbooks", "examples", "tests/fixtures/valid"] {
        runbooks_under(&repo_root().join(dir), &mut files);
    }
    assert!(!files.is_empty());
    for file in files {
        let doc = yaml_as_json(&file);
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
}

#[test]
fn structurally_broken_fixtures_fail_the_schema() {
    let validator = validator();
    let broken = [
        "05-missing-version",
        "06-unsupported-version",
        "07-version-as-string",
        "08-bad-runbook-name",
        "09-missing-steps",
        "11-unknown-top-level-key",
        "12-unknown-step-key",
        "13-field-of-other-type",
        "14-missing-type",
        "15-unknown-step-type",
        "16-bad-step-id",
        "18-bare-number-duration",
        "19-invalid-duration",
        "34-shell-missing-run",
        "35-http-missing-url",
        "36-kubectl-unknown-action",
        "39-gate-missing-message",
        "40-gate-bad-on-timeout",
        "44-bad-param-name",
        "45-retry-attempts-zero",
        "46-bad-backoff",
        "47-bad-status",
        "53-steps-not-a-map",
        "54-needs-wrong-type",
        "58-bad-stop-signal",
    ];
    let passing: Vec<&str> = broken
        .into_iter()
        .filter(|name| {
            let path = repo_root().join(format!("tests/fixtures/invalid/{name}.yaml"));
            validator.is_valid(&yaml_as_json(&path))
        })
        .collect();
    assert!(
        passing.is_empty(),
        "these broken fixtures pass the schema: {passing:?}"
    );
}

/// One step (or, with `top`, the file's own fields) that the editor, through
/// the schema, and `runbook validate` must judge alike.
struct Case {
    name: &'static str,
    valid: bool,
    yaml: String,
}

fn step_case(name: &'static str, valid: bool, step: &str) -> Case {
    Case {
        name,
        valid,
        yaml: format!(
            "version: 1\nname: t\nparams:\n  n: {{type: integer, default: 3}}\nsteps:\n  a: {step}\n  b: {{type: shell, run: \"true\"}}\n"
        ),
    }
}

fn top_case(name: &'static str, valid: bool, fields: &str) -> Case {
    Case {
        name,
        valid,
        yaml: format!(
            "version: 1\nname: t\n{fields}\nsteps:\n  b: {{type: shell, run: \"true\"}}\n"
        ),
    }
}

fn agreement_cases() -> Vec<Case> {
    let k = |rest: &str| format!("{{type: kubectl-action, {rest}}}");
    vec![
        // Literals of typed fields, also quoted (docs/format.md).
        step_case(
            "quoted-replicas",
            true,
            &k("action: scale, resource: deployment/x, replicas: \"3\""),
        ),
        step_case(
            "quoted-bool",
            true,
            "{type: shell, run: \"true\", read_only: \"true\"}",
        ),
        step_case(
            "quoted-tail-all",
            true,
            &k("action: logs, resource: pod/x, tail: \"-1\""),
        ),
        step_case(
            "negative-replicas",
            false,
            &k("action: scale, resource: deployment/x, replicas: -1"),
        ),
        step_case(
            "templated-replicas",
            true,
            &k("action: scale, resource: deployment/x, replicas: \"{{params.n}}\""),
        ),
        // Program arguments may be numbers; lists need a program.
        step_case(
            "argv-numbers",
            true,
            "{type: shell, run: \"true\", shell: [timeout, 5, sh, -c]}",
        ),
        step_case(
            "empty-shell",
            false,
            "{type: shell, run: \"true\", shell: []}",
        ),
        step_case(
            "empty-command",
            false,
            &k("action: exec, resource: deployment/x, command: []"),
        ),
        // Exit codes: one or a non-empty list, each 0 to 255.
        step_case(
            "one-exit-code",
            true,
            "{type: shell, run: \"true\", success_exit_codes: 1}",
        ),
        step_case(
            "exit-code-256",
            false,
            "{type: shell, run: \"true\", success_exit_codes: [256]}",
        ),
        step_case(
            "no-exit-codes",
            false,
            "{type: shell, run: \"true\", success_exit_codes: []}",
        ),
        step_case(
            "needs-twice",
            true,
            "{type: shell, run: \"true\", needs: [b, b]}",
        ),
        // Empty optional fields are mistakes, except where they mean "none".
        step_case(
            "null-description",
            false,
            "{type: shell, run: \"true\", description: }",
        ),
        step_case(
            "null-condition",
            false,
            "{type: gate, message: go?, condition: }",
        ),
        top_case("null-param", true, "params:\n  summary:"),
        top_case("null-finally", true, "finally:"),
        // Per-action rules of kubectl-action.
        step_case(
            "scale-without-replicas",
            false,
            &k("action: scale, resource: deployment/x"),
        ),
        step_case(
            "patch-without-patch",
            false,
            &k("action: patch, resource: deployment/x"),
        ),
        step_case(
            "exec-without-command",
            false,
            &k("action: exec, resource: deployment/x"),
        ),
        step_case("get-without-resource", false, &k("action: get")),
        step_case(
            "logs-by-selector",
            true,
            &k("action: logs, selector: app=x"),
        ),
        step_case("logs-without-target", false, &k("action: logs")),
        step_case(
            "tail-on-get",
            false,
            &k("action: get, resource: pods, tail: 5"),
        ),
        step_case("delete-a-kind", false, &k("action: delete, resource: pods")),
        step_case(
            "delete-kind-name",
            true,
            &k("action: delete, resource: pod/x"),
        ),
        step_case(
            "auto-rollback-of-scale",
            true,
            &k("action: scale, resource: deployment/x, replicas: 2, rollback: auto"),
        ),
        step_case(
            "auto-rollback-of-delete",
            false,
            &k("action: delete, resource: pod/x, rollback: auto"),
        ),
        step_case(
            "auto-rollback-of-shell",
            false,
            "{type: shell, run: \"true\", rollback: auto}",
        ),
        step_case(
            "json-patch-mapping",
            false,
            &k("action: patch, resource: deployment/x, patch_type: json, patch: {spec: {}}"),
        ),
        step_case(
            "merge-patch-list",
            false,
            &k(
                "action: patch, resource: deployment/x, patch_type: merge, patch: [{op: remove, path: /a}]",
            ),
        ),
        step_case(
            "json-patch-list",
            true,
            &k(
                "action: patch, resource: deployment/x, patch_type: json, patch: [{op: remove, path: /a}]",
            ),
        ),
        step_case(
            "patch-number",
            false,
            &k("action: patch, resource: deployment/x, patch: 5"),
        ),
        // Durations.
        step_case(
            "zero-timeout",
            false,
            "{type: shell, run: \"true\", timeout: 0s}",
        ),
        step_case(
            "zero-grace",
            true,
            "{type: shell, run: \"true\", grace: 0s}",
        ),
        step_case(
            "upper-case-unit",
            false,
            "{type: shell, run: \"true\", timeout: 30S}",
        ),
        step_case(
            "month-unit",
            false,
            "{type: shell, run: \"true\", timeout: 1M}",
        ),
        step_case(
            "spaced-duration",
            true,
            "{type: shell, run: \"true\", timeout: 1h 30m}",
        ),
        step_case(
            "fractional-duration",
            true,
            "{type: shell, run: \"true\", timeout: 1.5s}",
        ),
        step_case(
            "templated-timeout",
            true,
            "{type: shell, run: \"true\", timeout: \"{{params.n}}s\"}",
        ),
        top_case(
            "templated-run-timeout",
            false,
            "timeout: \"{{params.n}}m\"\nparams:\n  n: {default: 5}",
        ),
        top_case("zero-default-timeout", false, "defaults: {timeout: 0s}"),
        step_case(
            "templated-retry-delay",
            false,
            "{type: shell, run: \"true\", retry: {attempts: 2, delay: \"{{params.n}}s\"}}",
        ),
        step_case(
            "retry-attempts-1001",
            false,
            "{type: shell, run: \"true\", retry: {attempts: 1001}}",
        ),
        // Params: default and allowed values have the param's type.
        top_case(
            "string-param-number-default",
            false,
            "params:\n  p: {default: 3}",
        ),
        top_case(
            "integer-param-text-default",
            false,
            "params:\n  p: {type: integer, default: \"3\"}",
        ),
        top_case(
            "integer-param-allowed",
            true,
            "params:\n  p: {type: integer, default: 3, allowed: [3, 5]}",
        ),
        top_case("no-allowed-values", false, "params:\n  p: {allowed: []}"),
        top_case(
            "bad-param-env-name",
            false,
            "params:\n  p: {default: x, env: MY-VAR}",
        ),
        top_case("bad-env-name", false, "env:\n  MY-VAR: x"),
        // HTTP checks.
        step_case("ftp-url", false, "{type: http-check, url: \"ftp://x\"}"),
        step_case(
            "upper-case-scheme",
            true,
            "{type: http-check, url: \"HTTP://x\"}",
        ),
        step_case(
            "body-and-json",
            false,
            "{type: http-check, url: \"http://x\", body: a, json: {a: 1}}",
        ),
        step_case(
            "pointer-without-slash",
            false,
            "{type: http-check, url: \"http://x\", expect: {json: {status: ok}}}",
        ),
        step_case(
            "no-body-texts",
            false,
            "{type: http-check, url: \"http://x\", expect: {body_contains: []}}",
        ),
        step_case(
            "empty-method",
            false,
            "{type: http-check, url: \"http://x\", method: \"\"}",
        ),
        step_case(
            "method-with-digits",
            false,
            "{type: http-check, url: \"http://x\", method: G3T}",
        ),
        // Decisions: a boolean, `true`/`false`, or a template.
        step_case(
            "literal-when",
            false,
            "{type: shell, run: \"true\", when: \"yes\"}",
        ),
        step_case(
            "quoted-when",
            true,
            "{type: shell, run: \"true\", when: \"false\"}",
        ),
        step_case(
            "boolean-condition",
            true,
            "{type: gate, message: go?, condition: true}",
        ),
        step_case(
            "literal-condition",
            false,
            "{type: gate, message: go?, condition: always}",
        ),
        step_case(
            "top-of-deployments",
            false,
            &k("action: top, resource: deployments"),
        ),
        step_case("top-of-a-pod", true, &k("action: top, resource: Pod/x")),
        step_case("events-for-a-kind", false, &k("action: events, for: pods")),
        step_case(
            "spaced-kind-name",
            true,
            &k("action: rollout-restart, resource: \"deployment / web\""),
        ),
        step_case(
            "url-after-a-space",
            true,
            "{type: http-check, url: \" http://x\"}",
        ),
        step_case(
            "blank-program",
            false,
            "{type: shell, run: \"true\", shell: [\" \", -c]}",
        ),
        step_case(
            "blank-command",
            false,
            &k("action: exec, resource: deployment/x, command: [\"\"]"),
        ),
        step_case(
            "selector-beside-a-named-object",
            false,
            &k("action: get, resource: pod/x, selector: app=x"),
        ),
        step_case(
            "selector-beside-a-kind",
            true,
            &k("action: get, resource: pods, selector: app=x"),
        ),
        step_case(
            "empty-body-pattern",
            false,
            "{type: http-check, url: \"http://x\", expect: {body_matches: \"\"}}",
        ),
    ]
}

/// The editor (through the schema) and `runbook validate` judge these files
/// alike: a file the editor shows as clean validates, and a file validate
/// refuses is flagged in the editor. Cross-references (`needs`, template
/// variables, cycles) are the validator's alone and are not in these cases.
#[test]
fn schema_and_validate_agree() {
    let validator = validator();
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = agreement_cases();
    for case in &cases {
        std::fs::write(dir.path().join(format!("{}.yaml", case.name)), &case.yaml).expect("write");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["validate", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("runbook runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let refused: std::collections::BTreeSet<String> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["severity"] == "error")
        .filter_map(|d| d["file"].as_str())
        .filter_map(|f| Path::new(f).file_stem()?.to_str().map(str::to_owned))
        .collect();
    let mut disagreements = Vec::new();
    for case in &cases {
        let doc: serde_json::Value = serde_saphyr::from_str(&case.yaml).expect("YAML");
        let by_schema = validator.is_valid(&doc);
        let by_validate = !refused.contains(case.name);
        if by_schema != case.valid || by_validate != case.valid {
            disagreements.push(format!(
                "{}: expected {}, schema says {}, validate says {}",
                case.name,
                verdict(case.valid),
                verdict(by_schema),
                verdict(by_validate)
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

fn verdict(valid: bool) -> &'static str {
    if valid { "valid" } else { "invalid" }
}
