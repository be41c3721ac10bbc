//! Diagnostics: what is wrong, where, and how to fix it.
//!
//! Every diagnostic carries a stable [`Code`] (documented in
//! `docs/diagnostics.md`; scripts may match on it), a severity, the span of
//! the offending YAML node, a message naming the field and what was expected,
//! and optionally a help line. Rendering to terminals uses `annotate-snippets`.

use crate::span::Span;
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;
use std::path::Path;

/// Stable identifiers for every kind of problem the validator reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum Code {
    /// The file could not be read or is not UTF-8.
    Unreadable,
    /// The YAML is malformed.
    YamlSyntax,
    /// The YAML exceeds nesting or alias-expansion limits.
    YamlLimits,
    /// The file holds more than one YAML document.
    MultipleDocuments,
    /// A mapping repeats a key.
    DuplicateKey,
    /// A key that the format does not define.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value has the wrong YAML type.
    WrongType,
    /// A value has the right type but is not acceptable.
    InvalidValue,
    /// `version` is not `1`.
    UnsupportedVersion,
    /// A name, param name or step id does not match its pattern.
    InvalidIdentifier,
    /// A duration that cannot be parsed, or a bare number.
    InvalidDuration,
    /// A step id used twice across `steps`, `on_failure` and `finally`.
    DuplicateStepId,
    /// `needs` names a step that is not in the same map.
    UnknownNeed,
    /// `needs` forms a cycle.
    DependencyCycle,
    /// A template does not parse.
    TemplateSyntax,
    /// A template reads `params.X` for an undeclared param.
    UnknownParam,
    /// A template reads `steps.X` for a step that does not exist.
    UnknownStep,
    /// A main step reads `steps.X` without depending on X.
    MissingDependency,
    /// A template calls a helper that does not exist.
    UnknownHelper,
    /// A template reads a variable outside `params`, `env`, `steps`, `run`.
    UnknownVariable,
    /// A helper or block is given too few or too many arguments.
    WrongArgumentCount,
    /// Inside `{{#each}}` or `{{#with}}`, a path that starts with `params`,
    /// `steps`, `env` or `run` is read from the block's item (warning).
    RootNameInBlock,
    /// An `on_failure` or `finally` step reads a main step's outputs with
    /// no `default` and no `#if` on that step, and fails when the step did
    /// not run (warning).
    OutputsMayBeMissing,
    /// A main step's `when` reads `steps.X.failed` of a step whose failure
    /// stops the run, so it never sees it true (warning).
    FailureStopsTheRun,
    /// `rollback: auto` on an action without an inverse.
    RollbackNotInvertible,
    /// Raw `{{{ }}}` insertion in a shell script (warning).
    RawShellInsertion,
    /// A `{{ }}` insertion where no quoting keeps a value inert (backticks,
    /// after a backslash, a here-document's delimiter).
    UnsafeShellInsertion,
    /// A template inserts a step output that is a list or a mapping, which
    /// renders as Handlebars' placeholder text rather than its content.
    StructureInserted,
    /// A shell step's `run` or `shell` reads a secret param: the rendered
    /// command line is readable by every user of the machine (warning).
    SecretOnCommandLine,
    /// A field that does not apply in this context (warning or error).
    FieldNotApplicable,
    /// A param given on the command line or in a params file is wrong.
    InvalidParam,
}

impl Code {
    /// The stable code printed in every diagnostic.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unreadable => "RB001",
            Code::YamlSyntax => "RB002",
            Code::YamlLimits => "RB003",
            Code::MultipleDocuments => "RB004",
            Code::DuplicateKey => "RB005",
            Code::UnknownKey => "RB101",
            Code::MissingKey => "RB102",
            Code::WrongType => "RB103",
            Code::InvalidValue => "RB104",
            Code::UnsupportedVersion => "RB105",
            Code::InvalidIdentifier => "RB106",
            Code::InvalidDuration => "RB107",
            Code::DuplicateStepId => "RB108",
            Code::FieldNotApplicable => "RB109",
            Code::UnknownNeed => "RB201",
            Code::DependencyCycle => "RB202",
            Code::TemplateSyntax => "RB301",
            Code::UnknownParam => "RB302",
            Code::UnknownStep => "RB303",
            Code::MissingDependency => "RB304",
            Code::UnknownHelper => "RB305",
            Code::UnknownVariable => "RB306",
            Code::RawShellInsertion => "RB307",
            Code::UnsafeShellInsertion => "RB308",
            Code::StructureInserted => "RB309",
            Code::SecretOnCommandLine => "RB310",
            Code::WrongArgumentCount => "RB311",
            Code::RootNameInBlock => "RB312",
            Code::OutputsMayBeMissing => "RB313",
            Code::FailureStopsTheRun => "RB314",
            Code::RollbackNotInvertible => "RB401",
            Code::InvalidParam => "RB501",
        }
    }

    /// A short kebab-case name, used as the SARIF rule name.
    pub fn name(self) -> &'static str {
        match self {
            Code::Unreadable => "unreadable-file",
            Code::YamlSyntax => "yaml-syntax",
            Code::YamlLimits => "yaml-limits",
            Code::MultipleDocuments => "multiple-documents",
            Code::DuplicateKey => "duplicate-key",
            Code::UnknownKey => "unknown-key",
            Code::MissingKey => "missing-key",
            Code::WrongType => "wrong-type",
            Code::InvalidValue => "invalid-value",
            Code::UnsupportedVersion => "unsupported-version",
            Code::InvalidIdentifier => "invalid-identifier",
            Code::InvalidDuration => "invalid-duration",
            Code::DuplicateStepId => "duplicate-step-id",
            Code::FieldNotApplicable => "field-not-applicable",
            Code::UnknownNeed => "unknown-need",
            Code::DependencyCycle => "dependency-cycle",
            Code::TemplateSyntax => "template-syntax",
            Code::UnknownParam => "unknown-param",
            Code::UnknownStep => "unknown-step",
            Code::MissingDependency => "missing-dependency",
            Code::UnknownHelper => "unknown-helper",
            Code::UnknownVariable => "unknown-variable",
            Code::RawShellInsertion => "raw-shell-insertion",
            Code::UnsafeShellInsertion => "unsafe-shell-insertion",
            Code::StructureInserted => "structure-inserted",
            Code::SecretOnCommandLine => "secret-on-command-line",
            Code::WrongArgumentCount => "wrong-argument-count",
            Code::RootNameInBlock => "root-name-in-block",
            Code::OutputsMayBeMissing => "outputs-may-be-missing",
            Code::FailureStopsTheRun => "failure-stops-the-run",
            Code::RollbackNotInvertible => "rollback-not-invertible",
            Code::InvalidParam => "invalid-param",
        }
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The runbook cannot run.
    Error,
    /// Suspicious but runnable; `--strict` turns warnings into failures.
    Warning,
}

/// One problem found in a runbook.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, naming the field and what was expected.
    pub message: String,
    /// The offending node.
    pub span: Span,
    /// A short label shown under the caret.
    pub label: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A new error.
    pub fn error(code: Code, span: Span, message: String) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message,
            span,
            label: None,
            help: None,
        }
    }

    /// A new warning.
    pub fn warning(code: Code, span: Span, message: String) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// Adds the caret label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Diagnostics of one file, with the text they point into.
#[derive(Debug)]
pub struct FileDiagnostics<'a> {
    /// The file as the user named it.
    pub path: &'a Path,
    /// Its text (possibly empty when unreadable).
    pub source: &'a str,
    /// Its problems, sorted by position.
    pub diagnostics: &'a [Diagnostic],
}

/// Renders diagnostics for people, with a source snippet and a caret.
/// `color` selects ANSI styling; tests use plain output.
pub fn render_human(file: &FileDiagnostics<'_>, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let path = file.path.display().to_string();
    let mut out = String::new();
    for diagnostic in file.diagnostics {
        let level = match diagnostic.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = level
            .primary_title(diagnostic.message.as_str())
            .id(diagnostic.code.as_str());
        let mut group = Group::with_title(title);
        if !file.source.is_empty() {
            let (line, range) = line_of(file.source, diagnostic);
            if line.len() <= LONG_LINE {
                let annotation = AnnotationKind::Primary
                    .span(range)
                    .label(diagnostic.label.as_deref());
                group = group.element(
                    Snippet::source(line)
                        .line_start(diagnostic.span.line as usize)
                        .path(path.as_str())
                        .fold(true)
                        .annotation(annotation),
                );
            } else {
                // The renderer's time grows with the line's length, for every
                // diagnostic on it: 1,000 errors on one 9 KB line took 2 s.
                // A window around the span is shown instead, under a header
                // that names the position itself.
                let (window, range) = window_of(line, range);
                let annotation = AnnotationKind::Primary
                    .span(range)
                    .label(diagnostic.label.as_deref());
                group = group
                    .element(
                        annotate_snippets::Origin::path(path.as_str())
                            .line(diagnostic.span.line as usize)
                            .char_column(diagnostic.span.col as usize),
                    )
                    .element(
                        Snippet::source(window)
                            .line_start(diagnostic.span.line as usize)
                            .fold(true)
                            .annotation(annotation),
                    );
            }
        } else {
            group = group.element(
                annotate_snippets::Origin::path(path.as_str())
                    .line(diagnostic.span.line as usize)
                    .char_column(diagnostic.span.col as usize),
            );
        }
        if let Some(help) = &diagnostic.help {
            group = group.element(Level::HELP.message(help.as_str()));
        }
        let rendered = renderer.render(&[group]);
        out.push_str(&without_blank_origin(&rendered));
        out.push_str("\n\n");
    }
    out
}

/// The source line a diagnostic points into, and its span within that line
/// (the first line of a multi-line node is enough to locate it).
///
/// Only the line is handed to the renderer: given the whole file, it
/// indexed the file again for every diagnostic (20,000 errors in a 140 KB
/// file took 17 s), and it counted lines and columns its own way, so the
/// `-->` header could disagree with the diagnostic's position (a byte
/// order mark, lines ended by a lone CR, a span at the end of the file).
/// The line starts `col - 1` characters before the span, so the header
/// shows the diagnostic's own line and column.
fn line_of<'s>(source: &'s str, diagnostic: &Diagnostic) -> (&'s str, std::ops::Range<usize>) {
    let mut at = diagnostic.span.start.min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    // From the line break before, not `col` characters back: a snippet's
    // source may have secrets starred byte for byte, which makes the line
    // longer in characters than the file's.
    // A byte-order mark is not part of the first line's text.
    let first_line = if source.starts_with('\u{feff}') { 3 } else { 0 };
    let line_start = source[..at]
        .rfind(['\n', '\r'])
        .map_or(first_line, |offset| offset + 1)
        .min(at);
    let line_end = source[at..]
        .find(['\n', '\r'])
        .map_or(source.len(), |offset| at + offset);
    let end = diagnostic.span.end.clamp(at, line_end);
    let end = (at..=end)
        .rev()
        .find(|&offset| source.is_char_boundary(offset))
        .unwrap_or(at);
    (
        &source[line_start..line_end],
        at - line_start..end - line_start,
    )
}

/// Drops the `:::` line the renderer draws for a snippet without a path,
/// as the window of a long line is (its header is the group's own).
fn without_blank_origin(rendered: &str) -> std::borrow::Cow<'_, str> {
    let blank_origin = |line: &str| {
        let mut visible = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // An SGR sequence: up to and including its final `m`.
                chars.by_ref().find(|&c| c == 'm');
            } else {
                visible.push(c);
            }
        }
        visible.trim() == ":::"
    };
    if !rendered.lines().any(blank_origin) {
        return std::borrow::Cow::Borrowed(rendered);
    }
    let kept: Vec<&str> = rendered.lines().filter(|l| !blank_origin(l)).collect();
    std::borrow::Cow::Owned(kept.join("\n"))
}

/// Lines longer than this are shown as a window around the span.
const LONG_LINE: usize = 512;

/// At most this much of a long line is shown on each side of the span.
const WINDOW_MARGIN: usize = 80;

/// The part of a long `line` around `span`, and the span within it. The
/// span itself is kept whole up to 256 bytes.
fn window_of(line: &str, span: std::ops::Range<usize>) -> (&str, std::ops::Range<usize>) {
    let boundary_at_or_before = |mut at: usize| {
        at = at.min(line.len());
        while !line.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let start = boundary_at_or_before(span.start.saturating_sub(WINDOW_MARGIN));
    let span_end = boundary_at_or_before(span.end.min(span.start + 256));
    let end = boundary_at_or_before(span_end + WINDOW_MARGIN);
    (
        &line[start..end],
        span.start - start..span_end.max(span.start) - start,
    )
}

/// The JSON form of one diagnostic (`validate --format json`).
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    /// File path.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// `error` or `warning`.
    pub severity: Severity,
    /// Stable code, such as `RB101`.
    pub code: &'static str,
    /// Kebab-case name of the code.
    pub name: &'static str,
    /// The message.
    pub message: &'a str,
    /// Help, if any.
    pub help: Option<&'a str>,
}

impl<'a> JsonDiagnostic<'a> {
    /// Builds the JSON form of `diagnostic` in `path`.
    pub fn new(path: &Path, diagnostic: &'a Diagnostic) -> Self {
        JsonDiagnostic {
            file: path.display().to_string(),
            line: diagnostic.span.line,
            col: diagnostic.span.col,
            severity: diagnostic.severity,
            code: diagnostic.code.as_str(),
            name: diagnostic.code.name(),
            message: &diagnostic.message,
            help: diagnostic.help.as_deref(),
        }
    }
}

/// Renders a GitHub Actions workflow command for one diagnostic.
pub fn render_github(path: &Path, diagnostic: &Diagnostic) -> String {
    let command = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut message = format!("{} {}", diagnostic.code.as_str(), diagnostic.message);
    if let Some(help) = &diagnostic.help {
        message.push_str(&format!(" (help: {help})"));
    }
    format!(
        "::{command} file={},line={},col={},title={}::{}",
        escape_github_property(&path.display().to_string()),
        diagnostic.span.line,
        diagnostic.span.col,
        escape_github_property(diagnostic.code.name()),
        escape_github_data(&message)
    )
}

/// A GitHub Actions error annotation with no file: a problem with the
/// invocation itself (a path that does not exist).
pub fn render_github_error(message: &str) -> String {
    format!("::error::{}", escape_github_data(message))
}

// The workflow-command grammar reserves these characters; unescaped they
// would cut the message short or split the annotation.
fn escape_github_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_github_property(text: &str) -> String {
    escape_github_data(text)
        .replace(':', "%3A")
        .replace(',', "%2C")
}

/// A file path as the URI reference SARIF requires: every byte but the
/// unreserved characters and `/` percent-encoded, so a space, `#` or `%`
/// in a file name does not turn into a fragment or a broken escape.
fn sarif_uri(path: &Path) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
    const KEPT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    percent_encode(path.as_os_str().as_encoded_bytes(), KEPT).to_string()
}

/// A SARIF log for a check that could not run (a usage error): no results,
/// and an invocation that says why, so that an upload step shows the
/// reason instead of failing on empty input.
pub fn render_sarif_error(message: &str) -> serde_json::Value {
    let mut log = render_sarif(&[]);
    log["runs"][0]["invocations"] = serde_json::json!([{
        "executionSuccessful": false,
        "toolExecutionNotifications": [{
            "level": "error",
            "message": { "text": message }
        }]
    }]);
    log
}

/// Renders all diagnostics as one SARIF 2.1.0 log (for code-scanning UIs).
pub fn render_sarif(files: &[FileDiagnostics<'_>]) -> serde_json::Value {
    let mut rules: Vec<Code> = files
        .iter()
        .flat_map(|f| f.diagnostics.iter().map(|d| d.code))
        .collect();
    rules.sort();
    rules.dedup();
    let results: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|file| {
            file.diagnostics.iter().map(move |d| {
                serde_json::json!({
                    "ruleId": d.code.as_str(),
                    "level": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                    "message": { "text": match &d.help {
                        Some(help) => format!("{} (help: {help})", d.message),
                        None => d.message.clone(),
                    }},
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": sarif_uri(file.path) },
                            "region": { "startLine": d.span.line, "startColumn": d.span.col }
                        }
                    }]
                })
            })
        })
        .collect();
    serde_json::json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": {
                "name": "runbook",
                "informationUri": "https://github.com/runbook-engine/runbook",
                "rules": rules.iter().map(|c| serde_json::json!({"id": c.as_str(), "name": c.name()})).collect::<Vec<_>>()
            }},
            // Columns count characters, as the human output does; a
            // consumer would otherwise count UTF-16 code units.
            "columnKind": "unicodeCodePoints",
            "results": results
        }]
    })
}
