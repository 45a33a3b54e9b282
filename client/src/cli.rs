//! Command-line interface of `ftc`: clap structs only. Every flag's `///` line is its --help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ft_client::ServerAddress;

/// Shown at the end of every --help: the one place exit codes are documented for users.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success: every file was stored and verified
  1  some files were not stored (the others were; see the messages)
  2  bad arguments or unusable local files; nothing was sent
  3  the server could not be reached, refused the session, or the connection failed";

/// ftc: send files to an fts server, verified end to end with BLAKE3.
#[derive(Debug, Parser)]
#[command(name = "ftc", version, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// ftc's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Upload files; each is stored only once the server has verified its BLAKE3 hash.
    #[command(
        visible_alias = "put",
        after_help = concat!(
            "Examples:\n",
            "  ftc send backup.example.org:7878 db.dump logs.tar.gz\n",
            "  ftc send 10.0.0.5 *.iso               (default port 7878)\n",
            "  ftc send [::1]:7878 report.pdf --overwrite\n\n",
            "A name that already exists on the server is kept, and the new file is stored as\n",
            "'name (1).ext' unless --overwrite is given.\n\n",
        ),
    )]
    Send(SendArgs),
    /// Show what the server has stored: size, time added, BLAKE3 and name.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  ftc list backup.example.org:7878\n  ftc list 127.0.0.1:7878 --json | jq .name\n"
    )]
    List(ListArgs),
}

/// Arguments of `ftc send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Server as HOST[:PORT]; HOST is a name, an IPv4 address or a bracketed IPv6 address.
    #[arg(value_name = "HOST:PORT")]
    pub(crate) server: ServerAddress,

    /// Files to upload. Each is stored under its file name (without folders).
    #[arg(value_name = "FILE", required = true)]
    pub(crate) paths: Vec<PathBuf>,

    /// Replace files of the same name on the server instead of keeping both.
    #[arg(long)]
    pub(crate) overwrite: bool,

    /// Reconnect and resume up to N times in a row after the connection drops (the count
    /// restarts whenever a retry makes progress). Backoff doubles from 0.5 s up to 30 s.
    #[arg(long, value_name = "N", default_value_t = ft_client::DEFAULT_RETRIES)]
    pub(crate) retries: u32,

    /// Don't draw progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long)]
    pub(crate) no_progress: bool,
}

/// Arguments of `ftc list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Server as HOST[:PORT].
    #[arg(value_name = "HOST:PORT")]
    pub(crate) server: ServerAddress,

    /// Print one JSON object per line instead of columns.
    #[arg(long)]
    pub(crate) json: bool,
}
