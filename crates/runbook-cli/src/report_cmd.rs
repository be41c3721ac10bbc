//! `runbook report RUN_ID`: a run's incident timeline as Markdown, JSON or
//! one self-contained HTML file, read from its journal.

use crate::exit::ExitCode;
use crate::run_cmd::command_hint;
use anyhow::Context;
use runbook_engine::state_dir;
use runbook_report::{ReportError, load_report, render_html, render_json, render_markdown};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// Arguments of `runbook report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run (`runbook runs` lists them).
    pub run_id: String,
    /// Output format [default: from the extension of --output's FILE
    /// (.md, .json, .html or .htm), else md].
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Write the report to FILE (created or replaced, mode 0600) instead of
    /// stdout; `-` is stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where runs are recorded (default: $RUNBOOK_STATE_DIR,
    /// $XDG_STATE_HOME/runbook, ~/.local/state/runbook).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `--format` when given, else the format the output file's extension
/// names, else Markdown. `-o json` is refused: everywhere else `--output`
/// names a format, and writing Markdown to a file called `json` would
/// look like success.
fn chosen_format(args: &ReportArgs) -> Result<ReportFormat, String> {
    let Some(path) = &args.output else {
        return Ok(args.format.unwrap_or(ReportFormat::Md));
    };
    let as_format = |text: &str| match text.to_ascii_lowercase().as_str() {
        "md" | "markdown" => Some(ReportFormat::Md),
        "json" => Some(ReportFormat::Json),
        "html" | "htm" => Some(ReportFormat::Html),
        _ => None,
    };
    let bare_name = path.parent().is_none_or(|dir| dir.as_os_str().is_empty());
    if bare_name && let Some(named) = path.to_str().and_then(as_format) {
        return Err(format!(
            "`-o`/`--output` names the file to write, here `{}`; for the format, use `--format {}`",
            path.display(),
            named.name()
        ));
    }
    let by_extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .and_then(as_format);
    Ok(args.format.or(by_extension).unwrap_or(ReportFormat::Md))
}

/// Formats of `runbook report`.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Markdown, for a post-incident review document.
    Md,
    /// JSON with a documented, versioned structure.
    Json,
    /// One self-contained HTML page with a Gantt chart of the steps.
    Html,
}

impl ReportFormat {
    /// The value `--format` takes for it.
    fn name(self) -> &'static str {
        match self {
            ReportFormat::Md => "md",
            ReportFormat::Json => "json",
            ReportFormat::Html => "html",
        }
    }
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let format = match chosen_format(args) {
        Ok(format) => format,
        Err(message) => {
            errln!("error: {message}");
            return Ok(ExitCode::Usage);
        }
    };
    let state = state_dir(args.state_dir.as_deref(), &|name| std::env::var(name).ok())?;
    let mut report = match load_report(&state, &args.run_id) {
        Ok(report) => report,
        Err(error @ ReportError::UnknownRun { .. }) => {
            errln!("error: {error}");
            return Ok(ExitCode::Usage);
        }
        Err(error @ ReportError::Journal(_)) => {
            errln!("error: {error}");
            return Ok(ExitCode::Failure);
        }
    };
    if report.sessions.is_empty() {
        // Without `run_started` there is no runbook, param or start to
        // report; `runs` lists such a run as unreadable too.
        errln!(
            "error: the journal of run {} has no run_started event, so there is no run to report",
            args.run_id
        );
        return Ok(ExitCode::Failure);
    }
    if let Some(torn) = &report.journal.torn_line {
        errln!(
            "note: the journal ends with an incomplete line (line {}); the report covers everything before it",
            torn.line
        );
    }
    // Pasted without the `--state-dir` this report was read from, the
    // resume command would find no run.
    let resume = command_hint("resume", &report.run_id, args.state_dir.as_deref());
    report.set_resume_command(&resume);
    let text = match format {
        ReportFormat::Md => render_markdown(&report),
        ReportFormat::Json => render_json(&report),
        ReportFormat::Html => render_html(&report),
    };
    // `-o -` is stdout, as for most tools that take an output file.
    match args.output.as_ref().filter(|path| path.as_os_str() != "-") {
        Some(path) => {
            // Reports can hold command output; keep them as private as the
            // journal they come from. `mode` only applies to a file this
            // creates, so an existing one is made owner-only before it is
            // emptied and written; a FIFO or a terminal is written as is.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?;
            let is_regular = file.metadata().is_ok_and(|m| m.is_file());
            if is_regular {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .and_then(|()| file.set_len(0))
                    .with_context(|| {
                        format!(
                            "cannot make `{}` owner-only (mode 0600) before writing the report to it",
                            path.display()
                        )
                    })?;
            }
            file.write_all(text.as_bytes())
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            errln!(
                "wrote the report of run {} to {}",
                report.run_id,
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::Success)
}
