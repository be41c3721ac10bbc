//! The exit-code table, in one place (spec section 7).

/// Every exit status the command uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// The run succeeded, or validation found no errors.
    Success,
    /// The run failed (after rollbacks), or validation found errors.
    Failure,
    /// Invalid runbook, params or usage; nothing was executed.
    Usage,
    /// Interrupted by SIGINT or SIGTERM.
    Interrupted,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(match code {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::Interrupted => 130,
        })
    }
}

/// Whether an error is stdout closing under us (`runbook plan | head`),
/// which is not worth an error message.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => Some(io.kind()),
            // `serde_json::to_writer` wraps the write's error in its own.
            None => cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind),
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}
