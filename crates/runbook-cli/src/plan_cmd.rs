//! `runbook plan`: resolved params and steps in dependency waves, with no
//! side effects.

use crate::exit::ExitCode;
use crate::{PlanArgs, PlanFormat};
use runbook_model::diagnostic::{FileDiagnostics, render_human};
use runbook_model::params::{ParamError, ParamInputs};
use std::io::{IsTerminal, Write};

pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let Some((runbook, params)) = load_with_params(&args.file, &args.sets, args.params.as_deref())?
    else {
        return Ok(ExitCode::Usage);
    };
    let plan = runbook_model::plan::plan(&runbook, &params);
    let mut out = std::io::stdout().lock();
    match args.format {
        PlanFormat::Human => out.write_all(plan.render_human().as_bytes())?,
        PlanFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
        }
        PlanFormat::Mermaid => out.write_all(plan.render_mermaid().as_bytes())?,
        PlanFormat::Dot => out.write_all(plan.render_dot().as_bytes())?,
    }
    out.flush()?;
    Ok(ExitCode::Success)
}

/// Loads and validates a runbook and resolves its params, printing every
/// problem to stderr. `None` means the caller must exit with status 2.
pub fn load_with_params(
    file: &std::path::Path,
    sets: &[String],
    params_file: Option<&std::path::Path>,
) -> anyhow::Result<
    Option<(
        runbook_model::Runbook,
        indexmap::IndexMap<String, runbook_model::params::ResolvedParam>,
    )>,
> {
    let (source, loaded) = runbook_model::load_file(file);
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if !loaded.diagnostics.is_empty() {
        let rendered = render_human(
            &FileDiagnostics {
                path: file,
                source: &source,
                diagnostics: &loaded.diagnostics,
            },
            color,
        );
        eprint!("{rendered}");
    }
    let Some(runbook) = loaded.runbook else {
        eprintln!(
            "error: `{}` is not a valid runbook; nothing was run",
            file.display()
        );
        return Ok(None);
    };
    let mut inputs = ParamInputs {
        sets: sets.to_vec(),
        file: None,
    };
    if let Some(path) = params_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read params file `{}`: {e}", path.display()))?;
        match runbook_model::yaml::parse(&text) {
            Ok(parsed) if parsed.diagnostics.is_empty() => inputs.file = Some(parsed.root),
            Ok(parsed) => {
                let rendered = render_human(
                    &FileDiagnostics {
                        path,
                        source: &text,
                        diagnostics: &parsed.diagnostics,
                    },
                    color,
                );
                eprint!("{rendered}");
                return Ok(None);
            }
            Err(diagnostics) => {
                let rendered = render_human(
                    &FileDiagnostics {
                        path,
                        source: &text,
                        diagnostics: &diagnostics,
                    },
                    color,
                );
                eprint!("{rendered}");
                return Ok(None);
            }
        }
    }
    match runbook_model::params::resolve(&runbook, &inputs, &|name| std::env::var(name).ok()) {
        Ok(params) => Ok(Some((runbook, params))),
        Err(errors) => {
            report_param_errors(&errors);
            Ok(None)
        }
    }
}

fn report_param_errors(errors: &[ParamError]) {
    for error in errors {
        eprintln!(
            "error[{}]: {error}",
            runbook_model::Code::InvalidParam.as_str()
        );
    }
    eprintln!(
        "{} param error{}; nothing was run",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}
