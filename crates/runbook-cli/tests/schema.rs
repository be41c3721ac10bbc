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
