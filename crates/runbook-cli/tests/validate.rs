//! `runbook validate` end to end: every broken fixture under
//! `tests/fixtures/invalid` has a reviewed snapshot of its human diagnostics,
//! and the JSON form must give exactly the codes and positions that the
//! fixture's `# expect: CODE LINE:COL` header lists.

mod common;
use common::repo_root;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn runbook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .current_dir(repo_root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the runbook binary runs")
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .expect("fixture inside the repository")
        .display()
        .to_string()
}

fn expectations(path: &Path) -> Vec<(String, u64, u64)> {
    let text =
        String::from_utf8_lossy(&std::fs::read(path).expect("fixture readable")).into_owned();
    text.lines()
        .map_while(|line| line.strip_prefix("# expect: "))
        .map(|rest| {
            let (code, position) = rest.split_once(' ').expect("`CODE LINE:COL`");
            let (line, col) = position.split_once(':').expect("`LINE:COL`");
            (
                code.to_string(),
                line.parse().expect("line number"),
                col.parse().expect("column number"),
            )
        })
        .collect()
}

#[test]
fn invalid_fixtures_match_their_snapshots_and_expectations() {
    let files = fixtures("invalid");
    assert!(
        files.len() >= 40,
        "the suite promises at least 40 broken runbooks"
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_string();
        let path = relative(file);
        let expected = expectations(file);
        assert!(!expected.is_empty(), "{path} has no `# expect:` header");

        let human = runbook(&["validate", &path]);
        let json = runbook(&["validate", "--format", "json", &path]);
        let report: serde_json::Value =
            serde_json::from_slice(&json.stdout).expect("valid JSON report");
        let want_status = if report["errors"] == 0 { 0 } else { 1 };
        if human.status.code() != Some(want_status) {
            failures.push(format!(
                "{path}: exit {:?}, expected {want_status}",
                human.status.code()
            ));
        }
        assert!(
            human.stdout.is_empty(),
            "{path}: human diagnostics belong on stderr"
        );
        insta::with_settings!({
            snapshot_path => repo_root().join("tests/snapshots/validate"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name.clone(), String::from_utf8_lossy(&human.stderr));
        });

        let actual: Vec<(String, u64, u64)> = report["diagnostics"]
            .as_array()
            .expect("diagnostics array")
            .iter()
            .map(|d| {
                (
                    d["code"].as_str().expect("code").to_string(),
                    d["line"].as_u64().expect("line"),
                    d["col"].as_u64().expect("col"),
                )
            })
            .collect();
        if actual != expected {
            failures.push(format!(
                "{path}: JSON diagnostics {actual:?}, expected {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn warnings_fail_only_under_strict() {
    let path = "tests/fixtures/invalid/41-raw-shell-insertion.yaml";
    assert_eq!(runbook(&["validate", path]).status.code(), Some(0));
    assert_eq!(
        runbook(&["validate", "--strict", path]).status.code(),
        Some(1)
    );
}

#[test]
fn valid_runbooks_have_no_diagnostics_even_under_strict() {
    for dir in ["tests/fixtures/valid", "runbooks", "examples"] {
        // examples/k8s holds Kubernetes manifests, not runbooks.
        let files: Vec<String> = runbook_files(&repo_root().join(dir))
            .iter()
            .filter(|p| !p.starts_with(repo_root().join("examples/k8s")))
            .map(|p| relative(p))
            .collect();
        if files.is_empty() {
            continue;
        }
        let mut args = vec!["validate", "--strict", "--format", "json"];
        args.extend(files.iter().map(String::as_str));
        let out = runbook(&args);
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("valid JSON report");
        assert_eq!(
            report["diagnostics"],
            serde_json::json!([]),
            "{dir}: {report:#}"
        );
        assert_eq!(out.status.code(), Some(0), "{dir}");
    }
}

fn runbook_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            out.extend(runbook_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn a_directory_is_checked_whole_in_one_pass() {
    let out = runbook(&["validate", "--format", "json", "tests/fixtures/invalid"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON report");
    assert_eq!(
        report["files"].as_u64(),
        Some(fixtures("invalid").len() as u64)
    );
    let files_with_problems: std::collections::BTreeSet<&str> = report["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["file"].as_str().expect("file"))
        .collect();
    assert_eq!(files_with_problems.len(), fixtures("invalid").len());
}

#[test]
fn github_annotations() {
    let out = runbook(&[
        "validate",
        "--format",
        "github",
        "tests/fixtures/invalid/20-unknown-need.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    insta::with_settings!({
        snapshot_path => repo_root().join("tests/snapshots/validate"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("github-format", String::from_utf8_lossy(&out.stdout));
    });
}

#[test]
fn sarif_lists_rules_and_results() {
    let out = runbook(&[
        "validate",
        "--format",
        "sarif",
        "tests/fixtures/invalid/61-many-problems.yaml",
    ]);
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid SARIF JSON");
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 13);
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        15
    );
}

#[test]
fn sarif_file_uris_are_percent_encoded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("my runbook #1, 100%.yaml");
    std::fs::copy(
        repo_root().join("tests/fixtures/invalid/48-bad-regex.yaml"),
        &file,
    )
    .expect("copy the fixture");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["validate", "--format", "sarif", "my runbook #1, 100%.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("the runbook binary runs");
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid SARIF JSON");
    assert_eq!(
        sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "my%20runbook%20%231%2C%20100%25.yaml"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = runbook(&["validate", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist.yaml"));
    let out = runbook(&["validate", "--format", "xml", "tests/fixtures/valid"]);
    assert_eq!(out.status.code(), Some(2));
    // A CI job that parses stdout gets the reason in its format.
    let out = runbook(&["validate", "--format", "json", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("a JSON report on stdout");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("does/not/exist.yaml")),
        "{report}"
    );
    assert_eq!(report["files"], 0);
    let out = runbook(&["validate", "--format", "github", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("::error::runbook validate: cannot read"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = runbook(&["validate", "--format", "sarif", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let sarif: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("a SARIF log on stdout");
    let invocation = &sarif["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false, "{sarif}");
    assert!(
        invocation["toolExecutionNotifications"][0]["message"]["text"]
            .as_str()
            .is_some_and(|e| e.contains("does/not/exist.yaml")),
        "{sarif}"
    );
    assert_eq!(sarif["runs"][0]["results"], serde_json::json!([]));
}

#[test]
fn schema_command_matches_the_committed_schema() {
    let out = runbook(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(repo_root().join("schemas/runbook.schema.json"))
        .expect("schemas/runbook.schema.json is committed");
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "schemas/runbook.schema.json is stale: run `cargo run -p runbook-cli -- schema > schemas/runbook.schema.json`"
    );
}

#[test]
fn a_directory_symlink_loop_is_walked_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("sub dir");
    std::fs::copy(
        repo_root().join("examples/hello.yaml"),
        sub.join("hello.yaml"),
    )
    .expect("copy a runbook");
    std::os::unix::fs::symlink("..", sub.join("loop")).expect("symlink");
    let out = runbook(&["validate", &dir.path().display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("ok: 1 file checked"), "{stderr}");
}

#[test]
fn kubernetes_manifests_in_a_directory_are_skipped_with_a_note() {
    let out = runbook(&["validate", "examples"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("note: skipped 2 Kubernetes manifests"),
        "{stderr}"
    );
    // Named on the command line, a manifest is checked (and is no runbook).
    let out = runbook(&["validate", "examples/k8s/job.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}

/// The `-->` header of the human form names the same line and column as
/// the JSON form, including where a renderer would count differently: a
/// byte order mark, lines ended by a lone CR, a position at the end of a
/// line or of the file, a character wider than one byte.
#[test]
fn the_human_header_and_json_agree_on_every_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&str, &[u8]); 8] = [
        ("eof", b"a: 1\nb\n"),
        ("unclosed", b"a: {b: 1\n"),
        ("bare-document", b"---\n"),
        (
            "bom",
            b"\xEF\xBB\xBFversion: 2\nname: x\nsteps: {a: {type: shell, run: 'true'}}\n",
        ),
        (
            "lone-cr",
            b"version: 1\rname: x\rsteps:\r  a: {type: shell, run: 'true', timeout: 5}\r",
        ),
        (
            "wide",
            "version: 1\nname: x\nsteps: {a: {type: shell, run: 'échec', timeout: 5}}\n".as_bytes(),
        ),
        (
            // Shown as a window of the line, under a header of its own.
            "long-line",
            format!(
                "version: 1\nname: x\nsteps: {{a: {{type: shell, run: '{}', timeout: 5}}}}\n",
                "é".repeat(600)
            )
            .leak()
            .as_bytes(),
        ),
        (
            "deep-template",
            format!(
                "version: 1\nname: x\nsteps: {{a: {{type: shell, run: '{}x{}'}}}}\n",
                "{{#if 1}}".repeat(40),
                "{{/if}}".repeat(40)
            )
            .leak()
            .as_bytes(),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, bytes).expect("write");
        let path = path.to_str().expect("utf-8 path");
        let human = runbook(&["validate", path]);
        assert_eq!(human.status.code(), Some(1), "{name}");
        let json = runbook(&["validate", "--format", "json", path]);
        let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
        let first = &report["diagnostics"][0];
        let header = format!("--> {path}:{}:{}", first["line"], first["col"]);
        let text = String::from_utf8_lossy(&human.stderr).into_owned()
            + &String::from_utf8_lossy(&human.stdout);
        assert!(text.contains(&header), "{name}: no `{header}` in\n{text}");
        assert!(!text.contains(":::"), "{name}: {text}");
        if name == "long-line" {
            assert!(text.contains("^ no unit"), "{name}: no caret in\n{text}");
        }
    }
}

/// A FIFO or a link to `/dev/zero` among the files of a directory is
/// reported as unreadable, not read: one would hang `validate`, the other
/// fill memory.
#[test]
fn special_files_in_a_directory_are_reported_not_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        repo_root().join("examples/hello.yaml"),
        dir.path().join("hello.yaml"),
    )
    .expect("copy a runbook");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).expect("symlink");
    let fifo = dir.path().join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let out = runbook(&["validate", &dir.path().display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("not a regular file").count(), 2, "{stderr}");
    assert!(stderr.contains("3 files checked"), "{stderr}");

    // Named one by one, they are runbooks that cannot be read (RB001, exit
    // 1), as is a link that loops, not a usage error (exit 2).
    std::os::unix::fs::symlink("loop.yaml", dir.path().join("loop.yaml")).expect("symlink");
    for name in ["fifo.yaml", "zero.yaml", "loop.yaml"] {
        let out = runbook(&["validate", &dir.path().join(name).display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("error[RB001]"), "{name}: {stderr}");
        assert!(!stderr.contains("os error"), "{name}: {stderr}");
    }
}

/// A reader that stops early (`| grep -q`, `| head`) must not turn a
/// broken runbook into a pass, nor make the command panic.
#[test]
fn a_closed_output_keeps_the_verdict() {
    let broken = "tests/fixtures/invalid/61-many-problems.yaml";
    for format in ["human", "json", "github"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["validate", broken, "--format", format])
            .current_dir(repo_root())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the runbook binary runs");
        // Both ends closed before anything is written.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().expect("waits");
        assert_eq!(status.code(), Some(1), "--format {format}");
    }
}

/// Messages that cannot be written are lost, not a panic (exit 101): every
/// command keeps its own exit status with stderr closed.
#[test]
fn a_closed_stderr_is_no_panic() {
    let state = tempfile::tempdir().expect("state dir");
    let state = state.path().to_str().expect("UTF-8 path");
    for (args, code) in [
        (vec!["report", "nosuchrun", "--state-dir", state], 2),
        (vec!["resume", "nosuchrun", "--state-dir", state], 2),
        (vec!["run", "nosuchfile.yaml", "--state-dir", state], 2),
        (
            vec!["plan", "tests/fixtures/invalid/61-many-problems.yaml"],
            2,
        ),
        (
            vec!["approve", "nosuchrun", "gate", "--state-dir", state],
            2,
        ),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(&args)
            .current_dir(repo_root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the runbook binary runs");
        drop(child.stderr.take());
        let status = child.wait().expect("waits");
        assert_eq!(status.code(), Some(code), "{args:?}");
    }
}

/// One directory that cannot be listed is an error about it (RB001, exit
/// 1), and the runbooks beside it are still checked: it used to end the
/// whole check with a usage error. As root every directory can be listed,
/// so the check then runs as `nobody` (`setpriv`).
#[test]
fn a_directory_that_cannot_be_listed_is_an_error_and_the_rest_is_checked() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let scratch = tempfile::tempdir().expect("scratch dir");
    let root = scratch.path();
    let open = |path: &Path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod")
    };
    open(root);
    let runbook = "version: 1\nname: ok\nsteps:\n  a: {type: shell, run: echo}\n";
    for dir in ["ok", "locked"] {
        std::fs::create_dir(root.join(dir)).expect("mkdir");
        open(&root.join(dir));
        std::fs::write(root.join(dir).join("r.yaml"), runbook).expect("write");
    }
    std::fs::set_permissions(
        root.join("ok/r.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let as_root = std::fs::metadata(root).expect("stat").uid() == 0;
    let output = if as_root {
        let bin = root.join("runbook");
        std::fs::copy(env!("CARGO_BIN_EXE_runbook"), &bin).expect("copy the binary");
        open(&bin);
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&bin)
            .arg("validate")
            .arg(root)
            .env("NO_COLOR", "1")
            .output()
            .expect("setpriv (util-linux) runs")
    } else {
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("validate")
            .arg(root)
            .env("NO_COLOR", "1")
            .output()
            .expect("the runbook binary runs")
    };
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod back");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error[RB001]: cannot list the directory: Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed: 2 files checked, 1 error, 0 warnings"),
        "{stderr}"
    );
}
