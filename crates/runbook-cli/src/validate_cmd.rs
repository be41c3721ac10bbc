//! `runbook validate`: every problem of every file, in one pass.

use crate::exit::ExitCode;
use crate::{ValidateArgs, ValidateFormat};
use runbook_model::diagnostic::{
    FileDiagnostics, JsonDiagnostic, render_github, render_github_error, render_human, render_sarif,
};
use runbook_model::{Diagnostic, Severity};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// One checked file.
struct Checked {
    path: PathBuf,
    source: String,
    diagnostics: Vec<Diagnostic>,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let files = match files_to_check(args) {
        Ok(files) => files,
        Err(error) => {
            // A CI job reading stdout gets the reason there too, in its
            // format, rather than nothing to parse (exit 2 as well).
            let message = format!("{error:#}");
            let mut stdout = std::io::stdout().lock();
            match args.format {
                ValidateFormat::Json => writeln!(
                    stdout,
                    "{}",
                    serde_json::json!({
                        "files": 0,
                        "errors": 0,
                        "warnings": 0,
                        "diagnostics": [],
                        "error": message,
                    })
                )?,
                ValidateFormat::Github => writeln!(
                    stdout,
                    "{}",
                    render_github_error(&format!("runbook validate: {message}"))
                )?,
                ValidateFormat::Sarif => writeln!(
                    stdout,
                    "{}",
                    runbook_model::diagnostic::render_sarif_error(&format!(
                        "runbook validate: {message}"
                    ))
                )?,
                ValidateFormat::Human => {}
            }
            return Err(error);
        }
    };
    check(args, files)
}

/// The runbook files the paths name, each once, Kubernetes manifests found
/// in directories left out.
fn files_to_check(args: &ValidateArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in &args.paths {
        collect(path, &mut files)?;
    }
    // `validate dir dir/a.yaml` names a file twice: checked twice, its
    // errors would be annotated twice on a pull request.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    // Directories of a repository also hold other YAML; Kubernetes
    // manifests are the common case next to runbooks. Files named on the
    // command line are always checked.
    let (manifests, files): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| !args.paths.contains(f) && is_kubernetes_manifest(f));
    if !manifests.is_empty() && args.format == ValidateFormat::Human {
        let names: Vec<String> = manifests.iter().map(|m| m.display().to_string()).collect();
        errln!(
            "note: skipped {} Kubernetes manifest{} (apiVersion and kind, no steps): {}",
            manifests.len(),
            if manifests.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
    }
    if files.is_empty() {
        anyhow::bail!("no runbook files (*.yaml, *.yml) found in the given paths");
    }
    Ok(files)
}

fn check(args: &ValidateArgs, files: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let checked: Vec<Checked> = check_all(files);
    let count = |severity| {
        checked
            .iter()
            .flat_map(|c| &c.diagnostics)
            .filter(|d| d.severity == severity)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let verdict = if errors > 0 || (args.strict && warnings > 0) {
        ExitCode::Failure
    } else {
        ExitCode::Success
    };
    // The verdict stands when a reader stops early: `runbook validate … |
    // grep -q` or `| head` closing the pipe must not turn a broken
    // runbook into a pass.
    match print(args, &checked, errors, warnings) {
        Err(error) if crate::exit::is_broken_pipe(&error) => Ok(verdict),
        Err(error) => Err(error),
        Ok(()) => Ok(verdict),
    }
}

/// Prints the diagnostics in the chosen format.
fn print(
    args: &ValidateArgs,
    checked: &[Checked],
    errors: usize,
    warnings: usize,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match args.format {
        ValidateFormat::Human => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let mut stderr = std::io::stderr().lock();
            for file in checked {
                if file.diagnostics.is_empty() {
                    continue;
                }
                let rendered = render_human(
                    &FileDiagnostics {
                        path: &file.path,
                        source: &file.source,
                        diagnostics: &file.diagnostics,
                    },
                    color,
                );
                stderr.write_all(rendered.as_bytes())?;
            }
            writeln!(
                stderr,
                "{}: {} file{} checked, {} error{}, {} warning{}",
                if errors > 0 || (args.strict && warnings > 0) {
                    "failed"
                } else {
                    "ok"
                },
                checked.len(),
                plural(checked.len()),
                errors,
                plural(errors),
                warnings,
                plural(warnings),
            )?;
        }
        ValidateFormat::Json => {
            let diagnostics: Vec<JsonDiagnostic<'_>> = checked
                .iter()
                .flat_map(|c| {
                    c.diagnostics
                        .iter()
                        .map(|d| JsonDiagnostic::new(&c.path, d))
                })
                .collect();
            let report = serde_json::json!({
                "files": checked.len(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics,
            });
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            writeln!(stdout)?;
        }
        ValidateFormat::Github => {
            for file in checked {
                for d in &file.diagnostics {
                    writeln!(stdout, "{}", render_github(&file.path, d))?;
                }
            }
        }
        ValidateFormat::Sarif => {
            let files: Vec<FileDiagnostics<'_>> = checked
                .iter()
                .map(|c| FileDiagnostics {
                    path: &c.path,
                    source: &c.source,
                    diagnostics: &c.diagnostics,
                })
                .collect();
            serde_json::to_writer_pretty(&mut stdout, &render_sarif(&files))?;
            writeln!(stdout)?;
        }
    }
    stdout.flush()?;
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Checks files on all cores: a CI run over a thousand runbooks should be
/// bound by parsing, not by one thread.
fn check_all(files: Vec<PathBuf>) -> Vec<Checked> {
    // Asking for the core count reads cgroup files, which costs more than
    // checking one small runbook.
    let workers = if files.len() < 2 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(files.len())
    };
    if workers == 1 {
        return files.into_iter().map(check_one).collect();
    }
    let chunk = files.len().div_ceil(workers);
    let chunks: Vec<Vec<(usize, PathBuf)>> = files
        .into_iter()
        .enumerate()
        .collect::<Vec<_>>()
        .chunks(chunk)
        .map(<[_]>::to_vec)
        .collect();
    let mut results: Vec<(usize, Checked)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, path)| (i, check_one(path)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, c)| c).collect()
}

/// A YAML file with top-level `apiVersion:` and `kind:` and neither
/// `version:` nor `steps:`: a Kubernetes manifest, not a runbook.
fn is_kubernetes_manifest(path: &Path) -> bool {
    // Whatever is not a readable regular file of sane size is left to the
    // runbook loader, which says why it cannot read it; reading it here
    // first would hang on a FIFO or fill memory from `/dev/zero`.
    let Ok(bytes) = runbook_model::read_regular_file(path, runbook_model::MAX_RUNBOOK_BYTES) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    let top = |key: &str| text.lines().any(|line| line.starts_with(key));
    top("apiVersion:") && top("kind:") && !top("version:") && !top("steps:")
}

fn check_one(path: PathBuf) -> Checked {
    if path.is_dir() {
        // Only a directory that could not be listed is in the list: one
        // locked directory is an error about it, not the end of the check.
        let why = std::fs::read_dir(&path).err().map_or_else(
            || "it could not be listed".to_string(),
            |error| runbook_model::io_error_words(&error),
        );
        let diagnostic = Diagnostic::error(
            runbook_model::Code::Unreadable,
            runbook_model::Span {
                start: 0,
                end: 0,
                line: 1,
                col: 1,
            },
            format!("cannot list the directory: {why}"),
        )
        .with_help("the runbooks in it, if any, were not checked");
        return Checked {
            path,
            source: String::new(),
            diagnostics: vec![diagnostic],
        };
    }
    let (source, loaded) = runbook_model::load_file(&path);
    Checked {
        path,
        // Snippets quote the file: its secrets as stars.
        source: loaded.shown_source(&source).into_owned(),
        diagnostics: loaded.diagnostics,
    }
}

/// Expands directories into their runbook files, sorted so output is
/// deterministic whatever order the filesystem returns.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    collect_under(path, out, &mut std::collections::HashSet::new())
}

/// `seen` holds the directories already walked, by their real path: a
/// symlink back up the tree (`loop -> ..`) would otherwise be followed
/// until the OS gives up, listing every file dozens of times.
fn collect_under(
    path: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        // A link that leads nowhere readable (a loop) exists: checking it
        // says why it cannot be read, as for any file given by name.
        Err(_) if std::fs::symlink_metadata(path).is_ok() => {
            out.push(path.to_path_buf());
            return Ok(());
        }
        Err(error) => anyhow::bail!(
            "cannot read `{}`: {}",
            path.display(),
            runbook_model::io_error_words(&error)
        ),
    };
    // Anything but a directory is checked as a runbook, so a FIFO or a
    // device is RB001 (not a regular file) rather than a usage error.
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())) {
        return Ok(());
    }
    let Ok(listing) = std::fs::read_dir(path) else {
        // Checked as an error of its own (`check_one`).
        out.push(path.to_path_buf());
        return Ok(());
    };
    let mut entries: Vec<PathBuf> = listing.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        let is_dir = entry.is_dir();
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if is_dir {
            collect_under(&entry, out, seen)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}
