//! The runbook file format: parsing YAML with source spans, lowering it into
//! the typed [`Runbook`], validating it, and describing every problem as a
//! [`Diagnostic`] with file, line, column and a fix.
//!
//! The pipeline is `yaml::parse` (spanned tree) → lowering (typed model,
//! unknown/missing keys, types) → validation (graph and templates). [`load`]
//! runs all of it and returns every problem found in one pass.

pub mod diagnostic;
pub mod graph;
mod lower;
pub mod model;
pub mod params;
pub mod plan;
pub mod schema;
pub mod script_quoting;
pub mod span;
pub mod template;
mod validate;
mod written_secrets;
pub mod yaml;

pub use diagnostic::{Code, Diagnostic, Severity};
pub use lower::{
    DurationError, SIGNALS, did_you_mean, parse_duration, parse_status_list, regex_error_summary,
};
pub use model::*;
pub use span::{Span, Spanned};
pub use template::Template;
pub use written_secrets::{credential_parts, is_credential_header};

use std::path::Path;

/// The outcome of loading one runbook file.
#[derive(Debug)]
pub struct Loaded {
    /// The runbook, when it has no errors (warnings allowed).
    pub runbook: Option<Runbook>,
    /// Every problem found, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// Where the file holds secrets as written.
    secrets: Vec<std::ops::Range<usize>>,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The file's `text` as diagnostics may quote it: a secret param's
    /// default, a credential header's literal value and a literal URL's
    /// password shown as `*`, byte for byte.
    pub fn shown_source<'s>(&self, text: &'s str) -> std::borrow::Cow<'s, str> {
        written_secrets::masked(text, &self.secrets)
    }
}

/// Parses, lowers and validates the runbook in `text` (read from `path`).
pub fn load(path: &Path, text: &str) -> Loaded {
    let (root, mut diagnostics) = match yaml::parse(text) {
        Ok(parsed) => (parsed.root, parsed.diagnostics),
        Err(diagnostics) => {
            return Loaded {
                runbook: None,
                diagnostics,
                secrets: Vec::new(),
            };
        }
    };
    let mut lowerer = lower::Lowerer::new(text);
    let lowered = lowerer.runbook(&root, path);
    diagnostics.extend(lowerer.diagnostics);
    diagnostics.extend(validate::validate(&lowered, text));
    diagnostics.sort_by_key(|d| (d.span.start, d.span.line, d.span.col, d.code));
    diagnostics.dedup();
    // A step kept with a stand-in kind comes with an error of its own;
    // the second condition makes sure a stand-in can never be run.
    let has_errors = diagnostics.iter().any(Diagnostic::is_error) || !lowered.broken.is_empty();
    Loaded {
        runbook: (!has_errors).then_some(lowered.runbook),
        diagnostics,
        secrets: written_secrets::secret_ranges(&root, text),
    }
}

/// The largest runbook file read: far above any runbook a person writes,
/// far below what reading `/dev/zero` would take.
pub const MAX_RUNBOOK_BYTES: u64 = 64 << 20;

/// An I/O error in words, without the `(os error 2)` that Rust's own
/// rendering appends for the programmer: "No such file or directory".
pub fn io_error_words(error: &std::io::Error) -> String {
    let text = error.to_string();
    let suffix = error
        .raw_os_error()
        .map(|code| format!(" (os error {code})"));
    match suffix
        .as_deref()
        .and_then(|suffix| text.strip_suffix(suffix))
    {
        Some(words) => words.to_string(),
        None => text,
    }
}

/// Reads a file a runbook names or is, refusing what is not a regular file
/// (a FIFO would block, `/dev/zero` never ends) and anything over `limit`
/// bytes, instead of reading until memory runs out.
pub fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", limit >> 20),
        ));
    }
    Ok(bytes)
}

/// Reads and loads a runbook file; a file that cannot be read or is not
/// UTF-8 yields a single diagnostic.
pub fn load_file(path: &Path) -> (String, Loaded) {
    match read_regular_file(path, MAX_RUNBOOK_BYTES) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                let loaded = load(path, &text);
                (text, loaded)
            }
            Err(error) => {
                let valid = error.utf8_error().valid_up_to();
                let bytes = error.into_bytes();
                let prefix = String::from_utf8_lossy(&bytes[..valid]);
                let line = prefix.matches('\n').count() as u32 + 1;
                let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
                let diagnostic = Diagnostic::error(
                    Code::Unreadable,
                    Span {
                        start: 0,
                        end: 0,
                        line,
                        col,
                    },
                    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
                        // What Windows editors and PowerShell's `>` write.
                        "the file is UTF-16 (it starts with a UTF-16 byte order mark), not UTF-8"
                            .to_string()
                    } else {
                        format!("the file is not valid UTF-8 (first bad byte at offset {valid})")
                    },
                )
                .with_help("runbooks must be UTF-8 text; save the file as UTF-8");
                (
                    String::new(),
                    Loaded {
                        runbook: None,
                        diagnostics: vec![diagnostic],
                        secrets: Vec::new(),
                    },
                )
            }
        },
        Err(error) => {
            let diagnostic = Diagnostic::error(
                Code::Unreadable,
                Span {
                    start: 0,
                    end: 0,
                    line: 1,
                    col: 1,
                },
                format!("cannot read the file: {}", io_error_words(&error)),
            );
            (
                String::new(),
                Loaded {
                    runbook: None,
                    diagnostics: vec![diagnostic],
                    secrets: Vec::new(),
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{io_error_words, load_file};

    #[test]
    fn a_utf16_file_is_named_as_such() {
        let dir = std::env::temp_dir().join(format!("runbook-utf16-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("windows.yaml");
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend("version: 1\n".encode_utf16().flat_map(u16::to_le_bytes));
        std::fs::write(&path, bytes).expect("write");
        let (_, loaded) = load_file(&path);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            loaded.diagnostics[0].message,
            "the file is UTF-16 (it starts with a UTF-16 byte order mark), not UTF-8"
        );
    }

    #[test]
    fn an_io_error_is_said_without_the_os_error_number() {
        let missing = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_error_words(&missing), "No such file or directory");
        let custom = std::io::Error::other("not a regular file (os error is not ours)");
        assert_eq!(
            io_error_words(&custom),
            "not a regular file (os error is not ours)"
        );
    }
}
