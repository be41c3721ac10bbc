//! The `runbook` command. A thin layer over the library crates: argument
//! parsing, rendering for terminals and machines, and exit codes.

// Printing with `eprintln!` panics when stderr cannot be written (a
// closed pipe, a full disk); these lose the message instead, and the exit
// status still says what happened. Data for stdout is written with `?`.
#![deny(clippy::print_stderr, clippy::print_stdout)]

/// A line on stderr (see above).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Text on stderr (see above).
macro_rules! errtext {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod approve_cmd;
mod demo_cmd;
mod exit;
mod fd_table;
mod nohup;
mod pipe_writer;
mod plan_cmd;
mod prompt;
mod report_cmd;
mod reporter;
mod resume_cmd;
mod run_cmd;
mod runs_cmd;
mod schema_cmd;
mod validate_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use exit::ExitCode;
use std::path::PathBuf;

/// A declarative runbook engine: YAML DAGs of typed steps, run safely.
#[derive(Parser)]
#[command(name = "runbook", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check runbook files for every problem, with file:line:col diagnostics.
    Validate(ValidateArgs),
    /// Show resolved params and the steps in dependency waves, without running anything.
    Plan(PlanArgs),
    /// Print the JSON Schema of the runbook format (for editors and CI).
    Schema,
    /// Run a runbook: steps in dependency order, rollbacks on failure, journaled.
    Run(run_cmd::RunArgs),
    /// Continue a run whose engine died, where it stopped, in the same journal.
    Resume(resume_cmd::ResumeArgs),
    /// Approve (or `--reject`) a manual gate of a run waiting in another shell.
    Approve(approve_cmd::ApproveArgs),
    /// List recorded runs, newest first: runbook, start, duration, status, who ran it.
    Runs(runs_cmd::RunsArgs),
    /// A run's incident timeline from its journal, as Markdown, JSON or self-contained HTML.
    Report(report_cmd::ReportArgs),
    /// Run the SEV1 runbook end to end against a built-in simulated cluster and service.
    Demo(demo_cmd::DemoArgs),
}

/// Arguments of `runbook validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Runbook files, or directories searched for `*.yaml` and `*.yml`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
    pub format: ValidateFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
}

/// Formats of `runbook validate`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ValidateFormat {
    /// Source snippets with carets, for people.
    Human,
    /// One JSON document listing every diagnostic.
    Json,
    /// GitHub Actions workflow commands (annotations on pull requests).
    Github,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

/// Arguments of `runbook plan`.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The runbook file.
    pub file: PathBuf,
    /// Set a param: `--set name=value` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// A YAML file mapping param names to values.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
}

/// Formats of `runbook plan`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    /// A readable listing.
    Human,
    /// JSON.
    Json,
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate_cmd::run(&args),
        Command::Plan(args) => plan_cmd::run(&args),
        Command::Schema => schema_cmd::run(),
        Command::Run(args) => {
            fd_table::reserve_for(args.engine.max_parallel);
            run_cmd::run(&args)
        }
        Command::Approve(args) => approve_cmd::run(&args),
        Command::Resume(args) => {
            fd_table::reserve_for(args.engine.max_parallel);
            resume_cmd::run(&args)
        }
        Command::Demo(args) => demo_cmd::run(&args),
        Command::Runs(args) => runs_cmd::run(&args),
        Command::Report(args) => report_cmd::run(&args),
    };
    let code = match result {
        Ok(code) => code,
        Err(error) if exit::is_broken_pipe(&error) => ExitCode::Success,
        Err(error) => {
            errln!("error: {}", error_chain(&error));
            ExitCode::Usage
        }
    };
    // What is still queued for a pipe is written before the process ends.
    pipe_writer::flush_all(None);
    code.into()
}

/// The error and its causes joined by `: `, as `{:#}` would, except that a
/// cause the message before it already ends with is not repeated (library
/// errors often say their source in their own message too), and that an
/// I/O error is in words, without Rust's "(os error N)".
fn error_chain(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let raw = cause.to_string();
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => runbook_model::io_error_words(io),
            None => raw.clone(),
        };
        if !message.ends_with(&text) && !message.ends_with(&raw) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
