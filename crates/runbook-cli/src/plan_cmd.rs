//! `runbook plan`: resolved params and steps in dependency waves, with no
//! side effects.

use crate::exit::ExitCode;
use crate::{PlanArgs, PlanFormat};
use indexmap::IndexMap;
use runbook_model::Runbook;
use runbook_model::diagnostic::{FileDiagnostics, render_human};
use runbook_model::params::ResolvedParam;
use runbook_model::params::{ParamError, ParamInputs, ParamsFile};
use std::io::{IsTerminal, Write};
use std::path::Path;

pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let Some((runbook, params)) = load_with_params(&args.file, &args.sets, args.params.as_deref())?
    else {
        return Ok(ExitCode::Usage);
    };
    let plan = runbook_model::plan::plan(&runbook, &params);
    let text = match args.format {
        PlanFormat::Human => plan.render_human(),
        PlanFormat::Json => serde_json::to_string_pretty(&plan)? + "\n",
        PlanFormat::Mermaid => plan.render_mermaid(),
        PlanFormat::Dot => plan.render_dot(),
    };
    // By value, as a run masks them: a secret written in a step's text, a
    // URL's password given in a param.
    let redactor = runbook_engine::Redactor::new();
    for param in params.values() {
        let value = param.value.to_text();
        if param.secret {
            redactor.add(&value);
        }
        for password in runbook_model::plan::url_passwords(&value) {
            redactor.add(&password);
        }
    }
    let mut text = redactor.redact(&text);
    if args.format == PlanFormat::Human {
        text = visible(&text);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::Success)
}

/// `text` with control characters other than line breaks and tabs written
/// as escapes: a param's value (`--set s=$'\e[2J'`) printed as it is would
/// act on the terminal instead of being read.
fn visible(text: &str) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Loads and validates a runbook and resolves its params, printing every
/// problem to stderr. `None` means the caller must exit with status 2.
pub fn load_with_params(
    file: &Path,
    sets: &[String],
    params_file: Option<&Path>,
) -> anyhow::Result<Option<(Runbook, IndexMap<String, ResolvedParam>)>> {
    let (source, loaded) = runbook_model::load_file(file);
    let Some(runbook) = checked_runbook(file, &source, loaded, "") else {
        return Ok(None);
    };
    Ok(resolve_params(&runbook, sets, params_file, "")?.map(|params| (runbook, params)))
}

/// The runbook of a load, after printing its diagnostics to stderr; `None`
/// (the caller exits with status 2) when it has errors. `consequence`,
/// such as "; nothing was run", ends the closing line.
pub fn checked_runbook(
    file: &Path,
    source: &str,
    loaded: runbook_model::Loaded,
    consequence: &str,
) -> Option<Runbook> {
    if !loaded.diagnostics.is_empty() {
        let rendered = render_human(
            &FileDiagnostics {
                path: file,
                source: &loaded.shown_source(source),
                diagnostics: &loaded.diagnostics,
            },
            stderr_color(),
        );
        errtext!("{rendered}");
    }
    let unreadable = loaded
        .diagnostics
        .iter()
        .any(|d| d.code == runbook_model::Code::Unreadable);
    if loaded.runbook.is_none() {
        let problem = if unreadable {
            "cannot be read"
        } else {
            "is not a valid runbook"
        };
        errln!("error: `{}` {problem}{consequence}", file.display());
    }
    loaded.runbook
}

/// Resolves the params of `runbook` from `--set`, `--params FILE`, the
/// environment and defaults, printing every problem to stderr; `None` (the
/// caller exits with status 2) when there is one; `consequence` as for
/// [`checked_runbook`].
pub fn resolve_params(
    runbook: &Runbook,
    sets: &[String],
    params_file: Option<&Path>,
    consequence: &str,
) -> anyhow::Result<Option<IndexMap<String, ResolvedParam>>> {
    let mut inputs = ParamInputs {
        sets: sets.to_vec(),
        file: None,
    };
    let mut file_text = String::new();
    if let Some(path) = params_file {
        // As guarded as a runbook: `--params /dev/zero` or a FIFO would
        // otherwise grow without bound or wait forever.
        let text = runbook_model::read_regular_file(path, runbook_model::MAX_RUNBOOK_BYTES)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")
                })
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read params file `{}`: {}",
                    path.display(),
                    runbook_model::io_error_words(&e)
                )
            })?;
        let diagnostics = match runbook_model::yaml::parse(&text) {
            Ok(parsed) if parsed.diagnostics.is_empty() => {
                inputs.file = Some(ParamsFile {
                    root: parsed.root,
                    source: text.clone(),
                });
                Vec::new()
            }
            Ok(parsed) => parsed.diagnostics,
            Err(diagnostics) => diagnostics,
        };
        if !diagnostics.is_empty() {
            let rendered = render_human(
                &FileDiagnostics {
                    path,
                    source: &text,
                    diagnostics: &diagnostics,
                },
                stderr_color(),
            );
            errtext!("{rendered}");
            return Ok(None);
        }
        file_text = text;
    }
    match runbook_model::params::resolve(runbook, &inputs, &|name| std::env::var(name).ok()) {
        Ok(params) => Ok(Some(params)),
        Err(errors) => {
            let file = params_file.map(|path| (path, file_text.as_str()));
            report_param_errors(&errors, file, consequence);
            Ok(None)
        }
    }
}

/// `source` with the bytes of `span` shown as `*`, one per byte, so that
/// every position the snippet points at stays where it was.
fn mask_span(source: &str, span: runbook_model::Span) -> String {
    match source.get(span.start..span.end) {
        Some(value) => format!(
            "{}{}{}",
            &source[..span.start],
            "*".repeat(value.len()),
            &source[span.end..]
        ),
        None => source.to_string(),
    }
}

fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints param errors; one about a value in the params file (`file`: its
/// path and text) points at it, as a runbook's diagnostics do.
fn report_param_errors(errors: &[ParamError], file: Option<(&Path, &str)>, consequence: &str) {
    let code = runbook_model::Code::InvalidParam;
    for error in errors {
        match (error.params_file_span(), file) {
            (Some(span), Some((path, source))) => {
                let message = match error {
                    ParamError::BadFile { problem, .. } => problem.clone(),
                    other => other.to_string(),
                };
                let diagnostics = [runbook_model::Diagnostic::error(code, span, message)];
                let masked;
                let source = if error.hides_value() {
                    masked = mask_span(source, span);
                    masked.as_str()
                } else {
                    source
                };
                errtext!(
                    "{}",
                    render_human(
                        &FileDiagnostics {
                            path,
                            source,
                            diagnostics: &diagnostics,
                        },
                        stderr_color(),
                    )
                );
            }
            _ => errln!("error[{}]: {error}", code.as_str()),
        }
    }
    errln!(
        "{} param error{}{consequence}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}
