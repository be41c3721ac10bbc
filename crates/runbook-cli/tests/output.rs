//! Live output of `runbook run` end to end: the real binary and real shell
//! processes. Output reaches the terminal in batches (one message per read
//! of a pipe); these tests pin down that batching changes nothing a person
//! or a machine can see: every line, in order, prefixed by its step, and
//! secrets masked even when a secret's text arrives in two reads.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

/// Runs `runbook run` on `yaml` (written to a scratch file) with `args`;
/// returns the exit code, stderr and the journal's events.
fn run(yaml: &str, args: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let state = tempfile::tempdir().expect("state dir");
    let file = scratch.path().join("runbook.yaml");
    std::fs::write(&file, yaml).expect("write runbook");
    let output = Command::new(BIN)
        .arg("run")
        .arg(&file)
        .arg("--state-dir")
        .arg(state.path())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run runbook");
    let events = journal(state.path());
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        events,
    )
}

/// The events of the only run under `state`.
fn journal(state: &Path) -> Vec<Value> {
    let runs = std::fs::read_dir(state.join("runs"))
        .expect("runs dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect::<Vec<_>>();
    assert_eq!(runs.len(), 1, "one run directory");
    std::fs::read_to_string(runs[0].join("events.jsonl"))
        .expect("journal")
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

/// A line of a step's live output on stderr: shown, or a note counting the
/// lines left out at that place.
enum Live<'a> {
    Shown(&'a str),
    NotShown(u64),
}

/// The live output of `step` in `stderr`, in order.
fn live_output<'a>(stderr: &'a str, step: &str) -> Vec<Live<'a>> {
    let prefix = format!("[{step}] ");
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|rest| match rest.strip_prefix("… ") {
            Some(note) => {
                assert!(note.contains("lines not shown"), "{rest}");
                Live::NotShown(
                    note.split(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("a count in {rest:?}")),
                )
            }
            None => Live::Shown(rest),
        })
        .collect()
}

#[test]
fn every_live_line_reaches_stderr_once_and_in_order() {
    let yaml = "version: 1\nname: lines\nsteps:\n  count:\n    type: shell\n    shell: [sh, -c]\n    run: |\n      seq 1 100000\n      echo done >&2\n";
    let (code, stderr, _) = run(yaml, &["--live-lines", "0"]);
    assert_eq!(code, Some(0), "{stderr}");
    let numbers: Vec<u32> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[count] "))
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 100_000, "every line shown once");
    assert!(
        numbers.iter().copied().eq(1..=100_000),
        "lines shown out of order"
    );
    assert!(stderr.lines().any(|l| l == "[count] done"), "{stderr}");
}

/// Past `--live-lines` a second, lines are left out of the live output and
/// a note says how many, exactly where they were left out: reading the
/// shown numbers and the notes in order accounts for every line once.
#[test]
fn lines_past_the_live_limit_are_counted_where_they_were_left_out() {
    let yaml = "version: 1\nname: lines\nsteps:\n  count:\n    type: shell\n    shell: [sh, -c]\n    run: seq 1 100000\n";
    for limit in [None, Some("250")] {
        let args: Vec<&str> = limit.map_or(vec![], |l| vec!["--live-lines", l]);
        let (code, stderr, events) = run(yaml, &args);
        assert_eq!(code, Some(0), "{stderr}");
        let mut next = 1u64;
        let (mut shown, mut notes) = (0u64, 0);
        for live in live_output(&stderr, "count") {
            match live {
                Live::NotShown(count) => {
                    next += count;
                    notes += 1;
                }
                Live::Shown(text) => {
                    assert_eq!(text, next.to_string(), "shown in order, gaps noted");
                    next += 1;
                    shown += 1;
                }
            }
        }
        assert_eq!(next, 100_001, "every line shown or counted once");
        assert!(notes >= 1, "a note for the lines left out:\n{stderr}");
        let per_second: u64 = limit.map_or(10_000, |l| l.parse().expect("limit"));
        assert!(shown >= per_second, "the first second's lines are shown");
        // The step's outputs keep the tail whatever was shown.
        let finished = events
            .iter()
            .find(|e| e["event"] == "step_finished")
            .expect("step_finished");
        assert!(
            finished["outputs"]["stdout"]
                .as_str()
                .is_some_and(|s| s.ends_with("99999\n100000")),
            "{finished}"
        );
    }
}

/// A long line counts against `--live-lines` as one line per 256 bytes, so
/// a step printing long lines cannot push megabytes a second at the
/// terminal; what is left out is counted in order all the same.
#[test]
fn long_lines_count_against_the_live_limit_by_their_length() {
    // 3,000 lines of about 1 KB: 4 units each, so 100 lines a second fit
    // a limit of 400.
    let yaml = "version: 1\nname: long\nsteps:\n  long:\n    type: shell\n    shell: [sh, -c]\n    run: awk 'BEGIN { s = sprintf(\"%1000s\", \"\"); gsub(/ /, \"x\", s); for (i = 1; i <= 3000; i++) print i, s }'\n";
    let (code, stderr, events) = run(yaml, &["--live-lines", "400"]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut next = 1u64;
    let mut shown = 0u64;
    for live in live_output(&stderr, "long") {
        match live {
            Live::NotShown(count) => next += count,
            Live::Shown(line) => {
                let (number, text) = line.split_once(' ').expect("a number and text");
                assert_eq!(number, next.to_string(), "shown in order, gaps noted");
                assert_eq!(text.len(), 1000, "shown whole");
                next += 1;
                shown += 1;
            }
        }
    }
    assert_eq!(next, 3001, "every line shown or counted once");
    let finished = events
        .iter()
        .find(|e| e["event"] == "step_finished")
        .expect("step_finished");
    let seconds = finished["duration_ms"].as_u64().expect("duration_ms") / 1000;
    // 100 lines of each one-second window the step ran in (the last line
    // of a window may overdraw it); counted as one line each, 400 would be.
    assert!(
        shown >= 100 && shown <= (seconds + 1) * 101,
        "{shown} lines shown in {seconds} s"
    );
    assert!(
        finished["outputs"]["stdout"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("\n3000 {}", "x".repeat(1000)))),
        "the outputs keep the tail"
    );
}

#[test]
fn a_secret_split_across_two_reads_is_masked_in_live_output_and_outputs() {
    // The script writes the secret's first half, pauses (so the engine
    // reads the pipe in between), then the second half and the newline.
    // Neither half is a secret by itself; the whole line must be masked.
    let secret = "tok-7f3a9c-split-secret";
    let yaml = "version: 1\nname: split\nparams:\n  token: {secret: true}\nsteps:\n  leak:\n    type: shell\n    shell: [sh, -c]\n    run: |\n      t={{params.token}}\n      printf 'got %s' \"$(printf %s \"$t\" | cut -c1-10)\"\n      sleep 0.3\n      printf '%s end\\n' \"$(printf %s \"$t\" | cut -c11-)\"\n      printf 'err %s' \"$(printf %s \"$t\" | cut -c1-10)\" >&2\n      sleep 0.3\n      printf '%s end\\n' \"$(printf %s \"$t\" | cut -c11-)\" >&2\n";
    let set = format!("token={secret}");
    let (code, stderr, events) = run(yaml, &["--set", &set]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(secret), "secret on stderr:\n{stderr}");
    assert!(stderr.contains("[leak] got *** end"), "{stderr}");
    assert!(stderr.contains("[leak] err *** end"), "{stderr}");
    let finished = events
        .iter()
        .find(|e| e["event"] == "step_finished")
        .expect("step_finished");
    assert_eq!(finished["outputs"]["stdout"], "got *** end");
    assert_eq!(finished["outputs"]["stderr"], "err *** end");
    let journal = events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!journal.contains(secret), "secret in the journal");
}

#[test]
fn a_secret_in_output_cut_at_1_mib_reaches_a_later_step_and_is_masked_in_the_journal() {
    let secret = "S3cretTok99";
    let scratch = tempfile::tempdir().expect("scratch dir");
    let received = scratch.path().join("received");
    let yaml = format!(
        "version: 1\nname: cut\nparams:\n  tok: {{secret: true}}\nsteps:\n  login:\n    type: shell\n    shell: [sh, -c]\n    run: |\n      head -c 1100000 /dev/zero | tr '\\0' '.'; echo\n      echo {{{{params.tok}}}}\n  use:\n    type: shell\n    shell: [sh, -c]\n    needs: login\n    env: {{TOK: \"{{{{last steps.login.outputs.lines}}}}\"}}\n    run: printf '%s' \"$TOK\" > {}\n",
        received.display()
    );
    let set = format!("tok={secret}");
    let (code, stderr, events) = run(&yaml, &["--set", &set]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&received).expect("received"),
        secret
    );
    let login = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "login")
        .expect("login finished");
    let stdout = login["outputs"]["stdout"].as_str().expect("stdout");
    assert!(
        stdout.starts_with("[runbook: output truncated"),
        "{}",
        &stdout[..80]
    );
    assert!(
        stdout.ends_with("\n***"),
        "{}",
        &stdout[stdout.len() - 20..]
    );
    assert_eq!(
        login["masked_outputs"],
        serde_json::json!(["stdout", "lines"])
    );
    let journal = events.iter().map(Value::to_string).collect::<String>();
    assert!(!journal.contains(secret), "secret in the journal");
}

#[test]
fn a_nul_byte_reaching_a_command_fails_the_step_naming_the_field() {
    let yaml = "version: 1\nname: nul\nsteps:\n  a:\n    type: shell\n    shell: [sh, -c]\n    run: printf 'id-\\0-x'\n  b:\n    type: shell\n    shell: [sh, -c]\n    needs: a\n    env: {X: \"{{steps.a.outputs.stdout}}\"}\n    run: echo \"$X\"\n";
    let (code, stderr, events) = run(yaml, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let b = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "b")
        .expect("b finished");
    assert_eq!(b["status"], "failed");
    assert!(
        b["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("`env.X` rendered to text with a NUL byte")),
        "{b}"
    );
}

/// A reader that stops reading (`| less` left on a page) fills its pipe;
/// the engine goes on regardless: a step's timeout still fires, and the
/// run ends, before the reader takes anything more.
#[test]
fn a_reader_that_pauses_does_not_hold_up_the_run() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let state = scratch.path().join("state");
    let file = scratch.path().join("runbook.yaml");
    // 300 KB of output: its step_finished event alone overfills a pipe.
    std::fs::write(
        &file,
        "version: 1\nname: pause\nsteps:\n  chatty:\n    type: shell\n    shell: [sh, -c]\n    run: head -c 300000 /dev/zero | tr '\\0' 'x'; echo\n  stuck:\n    type: shell\n    shell: [sh, -c]\n    needs: chatty\n    timeout: 1s\n    run: sleep 30\n",
    )
    .expect("write runbook");
    let woke = scratch.path().join("reader-woke");
    let script = "\"$0\" run \"$1\" --state-dir \"$2\" --output json 2>&1 | { sleep 6; date +%s%3N > \"$3\"; cat > /dev/null; }";
    let status = Command::new("sh")
        .args(["-c", script, BIN])
        .arg(&file)
        .arg(&state)
        .arg(&woke)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .status()
        .expect("run the pipeline");
    assert_eq!(status.code(), Some(0), "the pipeline's reader ends it");
    let events = journal(&state);
    let stuck = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "stuck")
        .expect("stuck finished");
    assert!(
        stuck["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("timed out after 1s")),
        "{stuck}"
    );
    let finished = events.last().expect("events");
    assert_eq!(finished["event"], "run_finished");
    let ended_ms = chrono::DateTime::parse_from_rfc3339(finished["ts"].as_str().expect("ts"))
        .expect("RFC 3339")
        .timestamp_millis();
    let woke_ms: i64 = std::fs::read_to_string(&woke)
        .expect("the reader woke")
        .trim()
        .parse()
        .expect("milliseconds");
    assert!(
        ended_ms < woke_ms,
        "the run ended at {ended_ms}, after its reader woke at {woke_ms}"
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    // `runbook schema | head -1`: the reader is gone before the write.
    let mut child = Command::new(BIN)
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runbook starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("runbook exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_credential_written_in_a_header_is_masked_before_its_step_runs() {
    // `login` prints the key before the http-check that sends it has
    // started; the key is in the file, so it is known from the start.
    let key = "literalKEY-12345-abc";
    let yaml = format!(
        "version: 1\nname: early\nsteps:\n  login:\n    type: shell\n    shell: [sh, -c]\n    run: echo using {key}\n  call:\n    type: http-check\n    needs: [login]\n    url: http://127.0.0.1:9/health\n    headers: {{X-Api-Key: {key}, Authorization: \"Bearer {key}-2\"}}\n"
    );
    let (code, stderr, events) = run(&yaml, &[]);
    assert_eq!(code, Some(1), "the check cannot connect:\n{stderr}");
    assert!(!stderr.contains(key), "key on stderr:\n{stderr}");
    assert!(stderr.contains("[login] using ***"), "{stderr}");
    let journal = events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!journal.contains(key), "key in the journal:\n{journal}");
}

/// A URL's password given in a param is a secret from the run's start:
/// masked in `run_started`'s params and wherever else it turns up.
#[test]
fn a_url_password_given_in_a_param_is_masked_in_the_journal() {
    let yaml = "version: 1\nname: u\nparams:\n  base: {}\nsteps:\n  a:\n    type: shell\n    shell: [sh, -c]\n    run: echo {{params.base}}\n";
    let (code, stderr, events) = run(yaml, &["--set", "base=http://u:SetPass77@127.0.0.1:1/"]);
    assert_eq!(code, Some(0), "{stderr}");
    let journal = events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!journal.contains("SetPass77"), "{journal}");
    assert!(!stderr.contains("SetPass77"), "{stderr}");
    assert!(journal.contains("http://u:***@127.0.0.1:1/"), "{journal}");
}

/// Answers one HTTP request on 127.0.0.1 with `body` as JSON; returns the
/// URL to ask.
fn one_response_server(body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/token", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A secret that comes back in a response is the real value for a later
/// step's template (a login's token is what the next call needs), and
/// `***` in the journal, which names the outputs it masked so that a resume
/// does not hand out the stars.
#[test]
fn a_secret_in_a_response_reaches_later_steps_and_is_masked_in_the_journal() {
    let url = one_response_server(r#"{"token": "S3cretTok3n-77"}"#);
    let yaml = format!(
        "version: 1\nname: login\nparams:\n  token: {{secret: true, default: S3cretTok3n-77}}\nsteps:\n  call:\n    type: http-check\n    url: {url}\n  use:\n    type: shell\n    shell: [sh, -c]\n    needs: [call]\n    run: test {{{{steps.call.outputs.json.token}}}} = S3cretTok3n-77 && echo the real token\n"
    );
    let (code, stderr, events) = run(&yaml, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("[use] the real token"), "{stderr}");
    let call = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "call")
        .expect("call finished");
    assert_eq!(call["outputs"]["json"]["token"], "***");
    assert_eq!(call["masked_outputs"], serde_json::json!(["body", "json"]));
    let journal = events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!journal.contains("S3cretTok3n"), "{journal}");
}

/// A proxy from the environment that cannot be reached is named: the
/// service behind it was never tried, and blaming it would send the
/// person to the wrong machine.
#[test]
fn an_unreachable_proxy_is_named_in_the_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = closed.local_addr().expect("addr");
    drop(closed);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let file = scratch.path().join("runbook.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: p\nsteps:\n  check:\n    type: http-check\n    url: http://127.0.0.1:9/health\n",
    )
    .expect("write runbook");
    let mut command = Command::new(BIN);
    command
        .arg("run")
        .arg(&file)
        .arg("--state-dir")
        .arg(scratch.path().join("state"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for name in [
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(name);
    }
    let output = command
        .env("http_proxy", format!("http://ops:Pr0xyPass@{proxy}"))
        .output()
        .expect("run runbook");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the proxy {proxy} that HTTP_PROXY, HTTPS_PROXY or ALL_PROXY (NO_PROXY exempts hosts) names for 127.0.0.1:9: connection refused"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("Pr0xyPass"), "{stderr}");
}
