//! `runbook schema`: print the JSON Schema.

use crate::exit::ExitCode;
use std::io::Write;

pub fn run() -> anyhow::Result<ExitCode> {
    let schema = runbook_model::schema::runbook_schema();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &schema)?;
    writeln!(out)?;
    Ok(ExitCode::Success)
}
