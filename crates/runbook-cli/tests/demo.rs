//! `runbook demo` for every scenario: the SEV1 runbook runs end to end
//! against the simulated environment, and the final status of every step
//! (and every rollback) is snapshotted, so a change in the runbook's or the
//! engine's behaviour shows up in review.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn demo_table(scenario: &str) -> (Option<i32>, String) {
    let state = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "demo",
            scenario,
            "--approve-all",
            "--output",
            "json",
            "--state-dir",
        ])
        .arg(state.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runbook demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut steps: Vec<String> = Vec::new();
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    let mut rollbacks: Vec<String> = Vec::new();
    let mut finished = None;
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout must be NDJSON ({e}): {line}"));
        let step = event["step"].as_str().unwrap_or_default().to_string();
        match event["event"].as_str().unwrap_or_default() {
            "step_finished" | "step_skipped" => {
                if !steps.contains(&step) {
                    steps.push(step.clone());
                }
                status.insert(
                    step,
                    event["status"].as_str().unwrap_or_default().to_string(),
                );
            }
            "rollback_finished" => {
                rollbacks.push(format!(
                    "rollback {step}: {}",
                    event["status"].as_str().unwrap_or_default()
                ));
            }
            "run_finished" => finished = event["status"].as_str().map(str::to_string),
            _ => {}
        }
    }
    // File order, not completion order: parallel steps finish in any order.
    let runbook_path = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("../../runbooks/sev1-service-down.yaml");
    let (_, loaded) = runbook_model::load_file(&runbook_path);
    let order: Vec<String> = loaded
        .runbook
        .expect("the SEV1 runbook is valid")
        .all_steps()
        .map(|s| s.id.value.clone())
        .collect();
    steps.sort_by_key(|s| order.iter().position(|o| o == s).unwrap_or(usize::MAX));
    let mut table = format!(
        "run: {}\n",
        finished.unwrap_or_else(|| "(no run_finished event)".into())
    );
    for step in &steps {
        table.push_str(&format!("{step:<28} {}\n", status[step]));
    }
    for rollback in rollbacks {
        table.push_str(&rollback);
        table.push('\n');
    }
    (out.status.code(), table)
}

fn check(scenario: &str, expected_exit: i32) {
    let (code, table) = demo_table(scenario);
    assert_eq!(code, Some(expected_exit), "{scenario}:\n{table}");
    insta::with_settings!({
        snapshot_path => Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR when it runs a test")).join("../../tests/snapshots/demo"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(scenario.to_string(), table);
    });
}

#[test]
fn healthy_needs_no_remedy() {
    check("healthy", 0);
}

#[test]
fn crashloop_is_fixed_by_a_restart() {
    check("crashloop", 0);
}

#[test]
fn bad_deploy_is_fixed_by_a_rollback() {
    check("bad-deploy", 0);
}

#[test]
fn oomkilled_is_fixed_by_raising_the_memory_limit() {
    check("oomkilled", 0);
}

#[test]
fn disk_full_is_fixed_by_cleaning_after_approval() {
    check("disk-full", 0);
}

#[test]
fn unrecoverable_reaches_the_restore_gate_and_escalates() {
    check("unrecoverable", 1);
}

#[test]
fn another_runbook_gets_the_params_it_declares_and_set_gives_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runbook = dir.path().join("mine.yaml");
    // Declares one of the environment's params and one of its own; the
    // environment's other values would be unknown params to `run`.
    std::fs::write(
        &runbook,
        "version: 1\nname: mine\nparams:\n  base_url: {}\n  who: {}\nsteps:\n  \
         health: {type: http-check, url: '{{params.base_url}}/health'}\n  \
         hello: {type: shell, run: 'echo hello {{params.who}}', needs: [health]}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["demo", "healthy", "--runbook"])
        .arg(&runbook)
        .args(["--set", "who=sre", "--output", "json", "--state-dir"])
        .arg(dir.path().join("state"))
        .env("NO_COLOR", "1")
        .output()
        .expect("runbook demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hello = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|e| e["event"] == "step_finished" && e["step"] == "hello")
        .unwrap_or_else(|| panic!("no step_finished for hello:\n{stdout}\n{stderr}"));
    assert_eq!(hello["outputs"]["stdout"], "hello sre");
}

fn sev1() -> runbook_model::Runbook {
    let path = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("../../runbooks/sev1-service-down.yaml");
    let (_, loaded) = runbook_model::load_file(&path);
    loaded.runbook.expect("the SEV1 runbook is valid")
}

/// Automatic undos that would do harm when a later step fails: scaling a
/// database back up onto a restore that failed halfway (the scale-to-zero's
/// own undo, or the scale-up's, which runs after it), and reverting an
/// emergency memory increase that worked because a smoke test failed.
#[test]
fn sev1_does_not_undo_the_scale_to_zero_or_the_memory_increase() {
    let runbook = sev1();
    for id in ["scale-to-zero", "scale-up", "raise-memory"] {
        let step = runbook.steps.get(id).expect("the step exists");
        assert!(step.rollback.is_none(), "`{id}` must not be rolled back");
    }
}

/// The restore rung stops when no backup is listed, instead of scaling the
/// database to zero to restore an empty id.
#[test]
fn sev1_finding_no_backup_fails_before_the_restore_gate() {
    let runbook = sev1();
    let step = runbook.steps.get("latest-backup").expect("latest-backup");
    let runbook_model::StepKind::Shell(shell) = &step.kind else {
        panic!("latest-backup is a shell step");
    };
    let script = shell
        .run
        .text
        .replace("{{params.data_dir}}", "/data")
        .replace("{{params.backup_dir}}", "/backups")
        .replace("{{params.database}}", "production");
    assert!(!script.contains("{{"), "{script}");
    let bin = tempfile::tempdir().expect("bin dir");
    for (listing, code, out) in [
        ("", Some(1), ""),
        (
            "echo 'bk-2 production 2026-11-26'; echo 'bk-1 production 2026-11-25'",
            Some(0),
            "bk-2\n",
        ),
    ] {
        let tool = bin.path().join("backup_tool");
        std::fs::write(&tool, format!("#!/bin/sh\n{listing}\n")).expect("write tool");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let done = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .env("PATH", path)
            .output()
            .expect("run the script");
        assert_eq!(done.status.code(), code, "{listing:?}");
        assert_eq!(String::from_utf8_lossy(&done.stdout), out, "{listing:?}");
    }
}

/// The final status of each step of a `runbook demo SCENARIO --runbook
/// FILE` run (FILE relative to the repository), and its exit code.
fn demo_statuses(
    scenario: &str,
    file: &str,
    sets: &[&str],
) -> (Option<i32>, BTreeMap<String, String>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runbook = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("../..")
    .join(file);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.args(["demo", scenario, "--runbook"]).arg(&runbook);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd
        .args(["--output", "json", "--state-dir"])
        .arg(dir.path().join("state"))
        .env("NO_COLOR", "1")
        .output()
        .expect("runbook demo runs");
    let mut status = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if matches!(
            event["event"].as_str(),
            Some("step_finished" | "step_skipped")
        ) {
            status.insert(
                event["step"].as_str().unwrap_or_default().to_string(),
                event["status"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    (
        out.status.code(),
        status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SEV3 with the issue tracker down: the monitoring still runs, the
/// crash loop is judged no longer minor, and the escalation plan names the
/// ticket to file by hand.
#[test]
fn sev3_escalates_a_crash_loop_even_when_the_ticket_cannot_be_filed() {
    let (code, status, stderr) = demo_statuses(
        "crashloop",
        "runbooks/sev3-minor-issues.yaml",
        &[
            "summary=auth timeouts",
            "ticket_webhook=http://127.0.0.1:9/ticket",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(status["ticket"], "failed", "{stderr}");
    assert_eq!(status["pods"], "succeeded", "{stderr}");
    assert_eq!(status["still-minor"], "failed", "{stderr}");
    assert_eq!(status["escalation-plan"], "succeeded", "{stderr}");
    assert!(
        stderr.contains("file it by hand: SEV3: auth timeouts"),
        "{stderr}"
    );
}
