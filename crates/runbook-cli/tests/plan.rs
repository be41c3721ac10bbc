//! `runbook plan` end to end: a reviewed snapshot of every format for one
//! runbook that touches each rendering rule (tests/fixtures/plan).

mod common;
use common::repo_root;

use std::process::Command;

fn plan(format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "plan",
            "tests/fixtures/plan/failover.yaml",
            "--format",
            format,
        ])
        .current_dir(repo_root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the runbook binary runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan --format {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("plan output is UTF-8")
}

#[test]
fn every_format_matches_its_snapshot() {
    for format in ["human", "json", "mermaid", "dot"] {
        insta::with_settings!({
            snapshot_path => repo_root().join("tests/snapshots/plan"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format, plan(format));
        });
    }
}

#[test]
fn json_params_keep_their_types_and_unset_is_null() {
    let plan: serde_json::Value = serde_json::from_str(&plan("json")).expect("JSON plan");
    let value = |name: &str| {
        plan["params"]
            .as_array()
            .expect("params")
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["value"].clone())
            .expect("param listed")
    };
    assert_eq!(value("replicas"), serde_json::json!(3));
    assert_eq!(value("dry"), serde_json::json!(false));
    assert_eq!(value("token"), serde_json::json!("***"));
    assert_eq!(value("ticket"), serde_json::Value::Null);
}

#[test]
fn mermaid_gives_each_step_its_own_node() {
    let chart = plan("mermaid");
    let nodes: Vec<&str> = chart
        .lines()
        .filter(|line| line.contains("[\"") || line.contains("{\""))
        .map(|line| line.trim().split(['[', '{']).next().unwrap_or(""))
        .collect();
    let mut unique = nodes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(nodes.len(), 7, "{chart}");
    assert_eq!(
        unique.len(),
        nodes.len(),
        "two steps share a node:\n{chart}"
    );
    assert!(
        !nodes.contains(&"end"),
        "`end` is a Mermaid keyword:\n{chart}"
    );
}

/// `runbook ARGS` from the repository root, expected to exit 2: its stderr.
fn usage_error(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the runbook binary runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn plan_errors_do_not_claim_a_run() {
    let message = usage_error(&["plan", "tests/fixtures/plan/missing.yaml"]);
    assert!(
        message.contains("`tests/fixtures/plan/missing.yaml` cannot be read"),
        "{message}"
    );
    assert!(!message.contains("nothing was run"), "{message}");
}

/// `--params` is read with the same guard as a runbook file.
#[test]
fn a_params_file_that_is_not_a_regular_file_is_refused() {
    let message = usage_error(&["plan", "examples/hello.yaml", "--params", "/dev/zero"]);
    assert!(
        message.contains("cannot read params file `/dev/zero`: not a regular file"),
        "{message}"
    );
}

/// A param that a step uses as a whole typed field is checked as that
/// type before anything runs: `--set rollout_timeout=5` would otherwise
/// fail five rollout waits minutes into an incident.
#[test]
fn a_param_used_as_a_typed_field_must_parse_as_its_type() {
    let message = usage_error(&[
        "plan",
        "runbooks/sev1-service-down.yaml",
        "--set",
        "rollout_timeout=5",
        "--set",
        "chat_webhook=http://127.0.0.1:9/chat",
        "--set",
        "status_page_webhook=http://127.0.0.1:9/status",
    ]);
    assert!(
        message.contains(
            "param `rollout_timeout` is `5`, which steps `wait-memory`, `wait-restart`, `wait-scale`, `wait-undo` and `wait-restore` use as their `timeout`: it must be a duration (`5` has no unit)"
        ),
        "{message}"
    );
    let ok = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "plan",
            "runbooks/sev1-service-down.yaml",
            "--set",
            "rollout_timeout=90s",
            "--set",
            "chat_webhook=http://127.0.0.1:9/chat",
            "--set",
            "status_page_webhook=http://127.0.0.1:9/status",
        ])
        .current_dir(repo_root())
        .output()
        .expect("the runbook binary runs");
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
}

/// Masked by value as a run masks them: a URL's password given in a
/// param, a secret written in a step's text.
#[test]
fn plan_masks_a_url_password_in_a_param_and_a_secret_in_step_text() {
    for format in ["human", "json", "mermaid", "dot"] {
        let out = plan_of(
            "version: 1\nname: p\nparams:\n  base: {default: \"http://admin:pa55word@127.0.0.1:1/\"}\n  pw: {secret: true, default: hunter22pw}\nsteps:\n  a: {type: http-check, url: \"{{params.base}}health\"}\n  b: {type: shell, run: echo hunter22pw}\n",
            &["--format", format],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{format}");
        assert!(
            !text.contains("pa55word") && !text.contains("hunter22pw"),
            "{format}: {text}"
        );
    }
}

/// A value with terminal escapes is shown, not obeyed.
#[test]
fn control_characters_in_a_value_are_shown_as_escapes() {
    let out = plan_of(
        "version: 1\nname: p\nparams:\n  s: {default: x}\nsteps:\n  a: {type: shell, run: \"echo {{params.s}}\"}\n",
        &["--set", "s=a\x1b[2Jb\x07"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\x07'),
        "{stdout:?}"
    );
    assert!(stdout.contains(r"s = a\u{1b}[2Jb\u{7}"), "{stdout}");
}

/// `runbook plan` of `yaml`, written to a scratch file, with `args`.
fn plan_of(yaml: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, yaml).expect("write");
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("plan")
        .arg(&file)
        .args(args)
        .output()
        .expect("the runbook binary runs")
}
