//! Shell safety, checked with real shells: a param value inserted with
//! `{{ }}` anywhere in a script comes out of bash and dash as the same text
//! and never runs anything, whatever quotes surround the insertion.

use runbook_engine::Templates;
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// Values that break out of a naive quoting in one context or another.
const HOSTILE: &[&str] = &[
    "plain",
    "-n",
    "-x'; touch PWNED; '",
    "if",
    "",
    "two words",
    "it's",
    "say \"hi\"",
    "$(touch PWNED)",
    "`touch PWNED`",
    "x'; touch PWNED; '",
    "x\"; touch PWNED; \"",
    "back\\slash\\",
    "line one\ntouch PWNED",
    "$HOME ${HOME} $((1+1))",
    "* ? [a] ~ !x",
    "} ) ]] \\\" \\'",
    "tab\there",
    "\u{E000}0\u{E001}",
];

/// A script around `{{params.v}}`, the text it must print (with `{}` for
/// the value), and whether dash understands it.
type Context = (&'static str, &'static str, bool);

const CONTEXTS: &[Context] = &[
    (
        "printf '%s\\n' \"${NOT_SET_HERE:-{{params.v}}}\"",
        "{}\n",
        true,
    ),
    ("printf '%s\\n' {{params.v}}", "{}\n", true),
    ("printf '%s\\n' x{{params.v}}y", "x{}y\n", true),
    ("printf '%s\\n' \"x={{params.v}}.\"", "x={}.\n", true),
    ("printf '%s\\n' 'x={{params.v}}.'", "x={}.\n", true),
    ("printf '%s\\n' $'x={{params.v}}.'", "x={}.\n", false),
    ("printf '%s\\n' ${NOT_SET_HERE:-{{params.v}}}", "{}\n", true),
    (
        "printf '%s\\n' \"$(printf '%s' {{params.v}})\"",
        "{}\n",
        true,
    ),
    (
        "printf '%s\\n' \"$(printf '%s' \"<{{params.v}}>\")\"",
        "<{}>\n",
        true,
    ),
    (
        "printf '%s\\n' \"$(case a in a) printf '%s' {{params.v}};; esac)\"",
        "{}\n",
        true,
    ),
    ("cat <<EOF\nx={{params.v}}.\nEOF", "x={}.\n", true),
    ("cat <<-'EOF'\n\tx={{params.v}}.\n\tEOF", "x={}.\n", true),
    ("cat <<\"EOF\"\nx={{params.v}}.\nEOF", "x={}.\n", true),
    ("# note: {{params.v}}\nprintf '%s\\n' done", "done\n", true),
    ("printf '%s\\n' ok # {{params.v}}", "ok\n", true),
    ("cat <<< \"x={{params.v}}.\"", "x={}.\n", false),
    ("cat <<< {{params.v}}", "{}\n", false),
];

fn run(shell: &str, script: &str, dir: &Path) -> (String, String, bool) {
    let output = Command::new(shell)
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_remove("NOT_SET_HERE")
        .output()
        .expect("the shell starts");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

#[test]
fn no_value_escapes_its_insertion_in_bash_or_dash() {
    let templates = Templates::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut checked = 0;
    for (template, expected, dash_too) in CONTEXTS {
        for value in HOSTILE {
            let context = json!({"params": {"v": value}});
            let refused = (template.contains("\"${") && value.contains('\''))
                || (template.contains("$'") && value.contains(['\'', '\\']));
            if refused {
                let error = templates
                    .render_script(template, &context)
                    .expect_err("a quote with no spelling for both shells");
                assert!(error.0.contains("cannot be quoted"), "{error}");
                continue;
            }
            let script = templates
                .render_script(template, &context)
                .unwrap_or_else(|e| panic!("{template:?} with {value:?}: {e}"));
            let shells: &[&str] = if *dash_too {
                &["bash", "dash"]
            } else {
                &["bash"]
            };
            for shell in shells {
                let (stdout, stderr, ok) = run(shell, &script, dir.path());
                let want = expected.replace("{}", value);
                assert!(
                    !dir.path().join("PWNED").exists(),
                    "{shell} ran injected code: template {template:?}, value {value:?}, script {script:?}"
                );
                assert!(
                    ok,
                    "{shell} failed on {script:?} (value {value:?}): {stderr}"
                );
                assert_eq!(
                    stdout, want,
                    "{shell}: template {template:?}, value {value:?}, script {script:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked}");
}

#[test]
fn arithmetic_takes_integers_only() {
    let templates = Templates::new();
    let script = |v: serde_json::Value| {
        templates.render_script("echo $(( {{params.v}} + 1 ))", &json!({"params": {"v": v}}))
    };
    assert_eq!(script(json!(41)).expect("an integer"), "echo $(( 41 + 1 ))");
    assert_eq!(
        script(json!("-3")).expect("an integer"),
        "echo $(( (-3) + 1 ))"
    );
    let error = script(json!("a[$(touch PWNED)]")).expect_err("not an integer");
    assert!(error.0.contains("must be an integer"), "{error}");
}

#[test]
fn places_without_a_safe_quoting_are_refused() {
    let templates = Templates::new();
    let context = json!({"params": {"v": "x", "doc": "a\nEOF\ntouch PWNED"}});
    for (template, why) in [
        ("echo `echo {{params.v}}`", "backticks"),
        ("echo \"`echo {{params.v}}`\"", "backticks"),
        // `\{{` is Handlebars' own escape (a literal `{{`); `\\{{` is a
        // backslash before the value.
        ("echo \\\\{{params.v}}", "backslash"),
        ("echo \"\\\\{{params.v}}\"", "backslash"),
        ("cat <<{{params.v}}\nx\n", "delimiter"),
        (
            "cat <<EOF\n{{params.doc}}\nEOF",
            "end the here-document early",
        ),
        (
            "cat <<'EOF'\n{{params.doc}}\nEOF",
            "end the here-document early",
        ),
    ] {
        let error = templates
            .render_script(template, &context)
            .expect_err(template);
        assert!(error.0.contains(why), "{template:?}: {error}");
    }
}

#[test]
fn raw_insertions_stay_raw_and_shape_the_context() {
    let templates = Templates::new();
    let context = json!({"params": {"q": "\"", "v": "$(touch PWNED)"}});
    // The author's raw `"` opens a double-quoted string, so the escaped
    // value after it is written for that context.
    let script = templates
        .render_script("echo {{{params.q}}}{{params.v}}{{{params.q}}}", &context)
        .expect("renders");
    assert_eq!(script, "echo \"\\$(touch PWNED)\"");
}

#[test]
fn the_reserved_marker_characters_in_the_script_itself_are_refused() {
    let templates = Templates::new();
    let error = templates
        .render_script(
            "echo \u{E000}0\u{E001} {{params.v}}",
            &json!({"params": {"v": "x"}}),
        )
        .expect_err("reserved");
    assert!(error.0.contains("reserved"), "{error}");
}

/// Places where bash reads a value as arithmetic, a pattern or part of a
/// name take only values that read as themselves there, and refuse the
/// rest before anything runs; found by an attack on the quoting.
#[test]
fn arithmetic_patterns_and_names_take_only_plain_values() {
    let templates = Templates::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let pwned = dir.path().join("PWNED");
    let render = |template: &str, value: &str| {
        templates.render_script(template, &json!({"params": {"v": value}}))
    };
    let bash = |script: &str| run("bash", script, dir.path());
    let works = [
        ("(( n = {{params.v}} + 1 )); echo $n", "41", "42\n"),
        (
            "for (( i = 0; i < {{params.v}}; i++ )); do printf x; done",
            "3",
            "xxx",
        ),
        ("echo $[ {{params.v}} * 2 ]", "21", "42\n"),
        ("a=(x y z); echo \"${a[{{params.v}}]}\"", "2", "z\n"),
        (
            "f=a.tar.gz; echo \"${f%{{params.v}}}\" ${f#{{params.v}}}",
            ".gz",
            "a.tar a.tar.gz\n",
        ),
        ("s=abcdef; echo \"${s:{{params.v}}}\"", "3", "def\n"),
        ("unset U; echo \"${U:-\"{{params.v}}\"}\"", "a,b", "a,b\n"),
        (
            "x=5; echo $(( x-{{params.v}} )) $(( {{params.v}} * 010 ))",
            "-1",
            "6 -8\n",
        ),
        ("echo $(( {{params.v}} + 1 ))", "010", "11\n"),
        ("[[ {{params.v}} ]] && echo set", "-n", "set\n"),
        ("echo ~{{params.v}}", "root", "~root\n"),
        (
            "{{params.v}} 2>/dev/null || echo not-a-keyword",
            "time",
            "not-a-keyword\n",
        ),
        // `<<` in `$(( ))` is a shift in every shell: the next line's
        // insertion is still quoted.
        (
            "x=$(( 1 << 2 ))\necho {{params.v}} $x",
            "a; touch PWNED",
            "a; touch PWNED 4\n",
        ),
    ];
    for (template, value, want) in works {
        let script = render(template, value).unwrap_or_else(|e| panic!("{template}: {e}"));
        let (stdout, stderr, ok) = bash(&script);
        assert!(ok, "{script}: {stderr}");
        assert_eq!(stdout, want, "{script}");
    }
    let refused = [
        ("(( n = {{params.v}} ))", "$(touch PWNED)", "arithmetic"),
        // In sh, `((` is two subshells and `<<` a here-document.
        (
            "(( x = 1 << 2 ))\necho {{params.v}}",
            "x",
            "cannot be quoted for sh",
        ),
        ("echo $[ {{params.v}} ]", "x", "arithmetic"),
        (
            "echo \"price: ${{params.v}}\"",
            "(touch PWNED)",
            "right after `$`",
        ),
        (
            "cat <<EOF\n${{params.v}}\nEOF",
            "(touch PWNED)",
            "right after `$`",
        ),
        (
            "echo \"${a[{{params.v}}]}\"",
            "$(touch PWNED)",
            "array subscript",
        ),
        ("a[{{params.v}}]=1", "$(touch PWNED)", "array subscript"),
        ("echo \"${f%{{params.v}}}\"", "<(touch PWNED)", "pattern"),
        ("echo \"${f/{{params.v}}/y}\"", "*", "pattern"),
        ("echo \"${s:{{params.v}}}\"", "-3", "offset"),
        (
            "echo $'{{params.v}}'",
            "'; touch PWNED #",
            "cannot be quoted",
        ),
        (
            "echo \"${U:-\"{{params.v}}\"}\"",
            "{a,b}",
            "drop the inner double quotes",
        ),
    ];
    for (template, value, says) in refused {
        let error = render(template, value).expect_err(template);
        assert!(error.0.contains(says), "{template}: {error}");
    }
    assert!(!pwned.exists());
}
