//! Outcomes mapped to exit codes, in one place (documented in cli::EXIT_CODES_HELP and the
//! README). The same codes for every subcommand.

use std::process::ExitCode;

use ft_client::ClientError;

/// The exit statuses of `ftc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Exit {
    /// Everything asked for was done and verified.
    Success = 0,
    /// Some files or names failed; the others succeeded.
    SomeFilesFailed = 1,
    /// Bad arguments, configuration or local files; nothing was sent. (clap also exits 2
    /// on usage errors.)
    BadInput = 2,
    /// The server was unreachable, refused the session, or the connection failed.
    Connection = 3,
    /// Stopped by Ctrl-C (SIGINT), as shells count it: 128 + 2.
    Interrupted = 130,
}

impl Exit {
    /// The exit status for an operation that failed as a whole. An error that is not the
    /// library's was raised by `ftc` itself about its arguments or configuration.
    pub(crate) fn for_error(err: &anyhow::Error) -> Self {
        match err.downcast_ref::<ClientError>() {
            None | Some(ClientError::LocalFiles(_) | ClientError::KnownServers(_)) => {
                Exit::BadInput
            }
            Some(ClientError::Failed { .. } | ClientError::LocalWrite { .. }) => {
                Exit::SomeFilesFailed
            }
            Some(_) => Exit::Connection,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
