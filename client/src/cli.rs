//! Command-line interface of `ftc`: clap structs only. Every flag's `///` line is its --help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ft_client::ServerAddress;
use ft_protocol::Fingerprint;

/// Shown at the end of every --help (a macro so `concat!` can append it to each
/// subcommand's examples): the one place exit codes are documented for users.
macro_rules! exit_codes_help {
    () => {
        "\n\
Finding the server: HOST:PORT may be left out when FTC_SERVER is set or the config file
($XDG_CONFIG_HOME/ftc/config.toml, else ~/.config/ftc/config.toml) has `server = \"host:port\"`.
An explicit --server, or a first argument with a ':PORT', wins over both; the environment
wins over the file. The port defaults to 7878.

Exit codes (the same for every subcommand):
  0  success: everything asked for was done and verified
  1  some files or names failed (the others succeeded; see the messages)
  2  bad arguments, configuration or local files; nothing was sent
  3  the server could not be reached, refused the session or the credentials, showed
     another certificate than the one pinned, or the connection failed

Logging in: --user and --token (or FTC_USER and FTC_TOKEN, or `ftc login`, which saves
them in the config file). The first connection to a server records its certificate's
fingerprint in $XDG_CONFIG_HOME/ftc/known_servers; a different one later is refused."
    };
}

/// ftc: send files to an fts server and manage them there, verified end to end with BLAKE3.
#[derive(Debug, Parser)]
#[command(
    name = "ftc",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FT_GIT_COMMIT"), ")"),
    after_help = exit_codes_help!()
)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// ftc's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Upload files and folders; each file is stored only once the server verified its BLAKE3.
    #[command(
        visible_alias = "put",
        after_help = concat!(
            "Examples:\n",
            "  ftc send backup.example.org:7878 db.dump logs.tar.gz\n",
            "  ftc send 10.0.0.5 photos/             (a folder, default port 7878)\n",
            "  ftc send backup logs/ --into hosts/web1  (stored as hosts/web1/logs/...)\n",
            "  ftc send [::1]:7878 report.pdf --overwrite\n",
            "  FTC_SERVER=backup:7878 ftc send *.iso --json\n",
            "  ftc send backup report.pdf --to bob,carol --leave  (to people; kept for the offline)\n\n",
            "A file the server already holds under the same name is not sent again: it is\n",
            "'unchanged' when a stored version has the same size and the same BLAKE3 (the local\n",
            "file is hashed only when a stored version has its size). Other content under a\n",
            "taken name is stored as 'name (1).ext' (--overwrite replaces, --skip-existing\n",
            "leaves it). Folders keep\n",
            "their structure; symbolic links inside folders are not followed (they are listed as\n",
            "skipped); empty folders are created. After a connection loss ftc reconnects and\n",
            "resumes by itself. Ctrl-C stops at once: what was stored stays stored.\n",
            exit_codes_help!(),
        ),
    )]
    Send(SendArgs),
    /// Download stored files, verified against the BLAKE3 recorded in the catalog.
    #[command(
        after_help = concat!(
            "Examples:\n",
            "  ftc get backup:7878 db.dump\n",
            "  ftc get backup:7878 photos/2024/a.jpg -o ~/restore   (saved as ~/restore/photos/2024/a.jpg)\n",
            "  ftc get backup:7878 report.pdf --force                (replace the local file)\n",
            "  ftc get backup:7878 photos/ -o ~/restore              (a whole folder)\n",
            "  ftc get backup:7878 'photos/*.jpg'                    (a pattern, as for list)\n\n",
            "A file is written to a hidden '.NAME.ftc-part' next to its destination and gets its\n",
            "name only once verified. An interrupted download resumes from that partial file.\n",
            exit_codes_help!(),
        ),
    )]
    Get(GetArgs),
    /// Show what the server has stored: size, time added, BLAKE3 and name, sorted by name.
    #[command(
        visible_alias = "ls",
        after_help = concat!(
            "Examples:\n",
            "  ftc list backup:7878\n",
            "  ftc list backup:7878 'photos/*.jpg'\n",
            "  ftc list backup:7878 --json | jq -r 'select(.event == \"entry\") | .name'\n\n",
            "PATTERN: '*' matches anything (including '/'), '?' one character, [abc] a set.\n",
            exit_codes_help!(),
        ),
    )]
    List(ListArgs),
    /// Delete stored files and their catalog records.
    #[command(
        visible_alias = "delete",
        after_help = concat!(
            "Examples:\n  ftc rm backup:7878 old.dump\n  ftc rm backup:7878 'a (1).txt' b.txt --json\n",
            "  ftc rm backup:7878 'logs/*.gz'          (asks first; --yes to skip the question)\n",
            exit_codes_help!(),
        )
    )]
    Rm(RmArgs),
    /// Show the server's version, capabilities, usage, free space and limits.
    #[command(after_help = concat!(
        "Examples:\n  ftc info backup:7878\n  ftc info --json\n",
        exit_codes_help!(),
    ))]
    Info(InfoArgs),
    /// Interactive session over one connection: ls, put, get, rm, info, help, quit.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ftc shell backup:7878\n",
        "  printf 'put a.txt\\nls\\n' | ftc shell backup:7878   (scripted)\n\n",
        "Line editing and history when stdin is a terminal. A failed command does not end the\n",
        "session; the exit code is the worst any command earned.\n",
        exit_codes_help!(),
    ))]
    Shell(ShellArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  ftc completions bash > /etc/bash_completion.d/ftc\n  ftc completions zsh > ~/.zfunc/_ftc\n"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Log in once and remember it: server, user, token and certificate in the config file.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ftc login 'ft://alice:TOKEN@backup.example.org:7878/#SHA256:...'   (a connect string)\n",
        "  ftc login backup.example.org:7878 --user alice          (the token is asked for)\n",
        "  echo \"$TOKEN\" | ftc login backup:7878 --user alice\n\n",
        "A connect string pins the server's certificate; otherwise it is trusted on first use.\n",
        "The config file is made readable by its owner only.\n",
        exit_codes_help!(),
    ))]
    Login(LoginArgs),
    /// Be online for other users' `ftc send --to`, and save what you accept.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ftc listen backup:7878 -o ~/incoming\n",
        "  ftc listen --accept-from alice --accept-from bob     (others are asked, or declined)\n",
        "  ftc listen --yes --once                              (take the next offer, then exit)\n\n",
        "On a terminal each offer is shown and you accept all, none, or choose files; without a\n",
        "terminal it is declined unless --yes or its sender is in --accept-from. Files are\n",
        "verified (BLAKE3) before they get their names; a local file is never replaced (the new\n",
        "one is kept as 'name (1).ext') unless --force. Ctrl-C stops listening.\n",
        exit_codes_help!(),
    ))]
    Listen(ListenArgs),
    /// Show who is online now (and who listens for files).
    #[command(after_help = concat!("Examples:\n  ftc users backup:7878\n  ftc users --json\n", exit_codes_help!()))]
    Users(UsersArgs),
    /// Show the files other users left for you (`ftc send --to YOU --leave`); `ftc listen`
    /// receives them.
    #[command(after_help = concat!("Examples:\n  ftc inbox backup:7878\n  ftc inbox --json\n", exit_codes_help!()))]
    Inbox(UsersArgs),
    /// Print the man page (roff) to stdout.
    #[command(after_help = "Examples:\n  ftc man > /usr/share/man/man1/ftc.1\n")]
    Man,
}

/// Who to log in as, and which server certificate to expect.
#[derive(Debug, Args)]
pub(crate) struct AccessOptions {
    /// User to log in as (default: FTC_USER, or `user` from the config file).
    #[arg(long, value_name = "NAME", env = "FTC_USER")]
    pub(crate) user: Option<String>,

    /// The user's token (default: FTC_TOKEN, or `token` from the config file). A token on the
    /// command line shows in the process list: prefer the environment or `ftc login`.
    #[arg(long, value_name = "TOKEN", env = "FTC_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// The server certificate's fingerprint (SHA256:...); any other certificate is refused
    /// before anything is sent (default: FTC_FINGERPRINT, the config, or known_servers).
    #[arg(long, value_name = "SHA256:HEX", env = "FTC_FINGERPRINT")]
    pub(crate) fingerprint: Option<Fingerprint>,
}

/// Arguments of `ftc login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// A connect string (ft://USER:TOKEN@HOST:PORT/#SHA256:...) or HOST:PORT.
    #[arg(value_name = "CONNECT-STRING|HOST:PORT")]
    pub(crate) target: String,

    /// With HOST:PORT: the user to log in as (the token is read from stdin, or asked for).
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,

    /// With HOST:PORT: the server certificate's fingerprint to pin (SHA256:...).
    #[arg(long, value_name = "SHA256:HEX")]
    pub(crate) fingerprint: Option<Fingerprint>,
}

/// Options every server command takes.
#[derive(Debug, Args)]
pub(crate) struct ServerOptions {
    /// Server as HOST[:PORT]: a name, an IPv4 or a bracketed IPv6 address.
    #[arg(short, long, value_name = "HOST:PORT")]
    pub(crate) server: Option<ServerAddress>,

    /// Credentials and the expected certificate.
    #[command(flatten)]
    pub(crate) access: AccessOptions,

    /// Print one JSON object per line (NDJSON) instead of text; see the README for the schema.
    #[arg(long)]
    pub(crate) json: bool,

    /// Print only errors and the summary (no per-file lines, no bars).
    #[arg(short, long, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// Print per-file details: sizes, hashes, where each file came from.
    #[arg(short, long)]
    pub(crate) verbose: bool,

    /// Give up connecting after this long: the TCP connection, then the TLS handshake and
    /// the server's welcome, each (e.g. 10s, 500ms, 2m; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) connect_timeout: std::time::Duration,
}

/// A duration as typed on a command line: `10`, `10s`, `500ms`, `2m`, `1h`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e9) {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// A rate as typed on a command line: bytes per second with an optional binary suffix
/// (`500K`, `10M`, `1G`; `KB/s` style suffixes too).
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    let cleaned = text
        .trim()
        .trim_end_matches("/s")
        .trim_end_matches(['B', 'b']);
    let split = cleaned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(cleaned.len());
    let (number, unit) = cleaned.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (try 500K, 10M)"))?;
    let factor = match unit.trim().to_ascii_uppercase().trim_end_matches('I') {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown unit {other:?} (use K, M or G)")),
    };
    let rate = number * factor;
    if !(1.0..1e15).contains(&rate) {
        return Err(format!("{text:?} is not a positive rate"));
    }
    Ok(rate as u64)
}

/// Options of commands that move file content.
#[derive(Debug, Args)]
pub(crate) struct TransferOptions {
    /// Reconnect and resume up to N times in a row after the connection drops (the count
    /// restarts whenever a retry makes progress). Backoff doubles from 0.5 s up to 30 s.
    /// Default 5, or `retries` from the config file.
    #[arg(long, value_name = "N")]
    pub(crate) retries: Option<u32>,

    /// Don't draw progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long)]
    pub(crate) no_progress: bool,

    /// Move at most RATE bytes per second (e.g. 500K, 10M), averaged over the transfer.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub(crate) bwlimit: Option<u64>,
}

/// Arguments of `ftc send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Which server, and how to print.
    #[command(flatten)]
    pub(crate) server: ServerOptions,
    /// Retries and progress bars.
    #[command(flatten)]
    pub(crate) transfer: TransferOptions,

    /// [HOST:PORT] then the files and folders to upload.
    #[arg(value_name = "[HOST:PORT] PATH", required = true)]
    pub(crate) args: Vec<String>,

    /// Replace files of the same name on the server instead of keeping both.
    #[arg(long, conflicts_with = "skip_existing")]
    pub(crate) overwrite: bool,

    /// Never touch a name the server already has: such files are skipped, not renamed.
    #[arg(long)]
    pub(crate) skip_existing: bool,

    /// Kept for scripts; changes nothing: a file is always judged unchanged by its BLAKE3
    /// (read only when a stored file has its size), never by size and time alone.
    #[arg(long)]
    pub(crate) checksum: bool,

    /// Store under this folder on the server (REMOTE/DIR/name) instead of at the top.
    #[arg(long, value_name = "REMOTE/DIR")]
    pub(crate) into: Option<String>,

    /// Refuse the whole send if any entry inside a folder cannot be read (by default the
    /// readable files are sent, each unreadable path is reported, and the exit code is 1).
    #[arg(long)]
    pub(crate) strict: bool,

    /// Send to these online users (comma-separated) through the server instead of storing
    /// on it; each accepts or declines (see `ftc listen`).
    #[arg(long, value_name = "USER[,USER...]", value_delimiter = ',',
          conflicts_with_all = ["into", "overwrite", "skip_existing", "checksum"])]
    pub(crate) to: Vec<String>,

    /// With --to: how long recipients have to answer.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub(crate) offer_timeout: std::time::Duration,

    /// With --to: recipients who are not online get the files in their inbox on the server
    /// (verified and kept durably; offered when they next listen; removed after the
    /// server's inbox time to live, 7 days by default).
    #[arg(long, requires = "to")]
    pub(crate) leave: bool,

    /// Compress with zstd (level 1) on the way; chunks that do not shrink go as they are.
    /// Worth it on slow links with compressible data. Default: `compress` from the config file.
    #[arg(long)]
    pub(crate) compress: bool,
}

/// Arguments of `ftc get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// Which server, and how to print.
    #[command(flatten)]
    pub(crate) server: ServerOptions,
    /// Retries and progress bars.
    #[command(flatten)]
    pub(crate) transfer: TransferOptions,

    /// [HOST:PORT] then stored names, folders (`photos/`) or glob patterns to download.
    #[arg(value_name = "[HOST:PORT] NAME", required = true)]
    pub(crate) args: Vec<String>,

    /// Folder to save into (default: the current folder, or `output` from the config file).
    #[arg(short, long, value_name = "DIR")]
    pub(crate) output: Option<PathBuf>,

    /// Replace local files of the same name.
    #[arg(long)]
    pub(crate) force: bool,
}

/// Arguments of `ftc list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Which server, and how to print.
    #[command(flatten)]
    pub(crate) server: ServerOptions,

    /// [HOST:PORT] then an optional glob PATTERN.
    #[arg(value_name = "[HOST:PORT] [PATTERN]", num_args = 0..=2)]
    pub(crate) args: Vec<String>,

    /// Exact sizes in bytes instead of human units.
    #[arg(short, long)]
    pub(crate) bytes: bool,

    /// Times in UTC instead of local time.
    #[arg(long)]
    pub(crate) utc: bool,

    /// The full BLAKE3 instead of its first 12 digits, and the sender's modification time.
    #[arg(short, long)]
    pub(crate) long: bool,

    /// Order by name (natural: part2 before part10), size or time added (newest last).
    #[arg(long, value_enum, default_value = "name")]
    pub(crate) sort: SortKey,

    /// One line per top-level folder (files, total size, newest), like `ls -d`.
    #[arg(short = 'd', long)]
    pub(crate) folders: bool,
}

/// What `list --sort` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SortKey {
    /// Natural name order.
    Name,
    /// Size, smallest first.
    Size,
    /// Time added, oldest first.
    Time,
}

/// Arguments of `ftc rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Which server, and how to print.
    #[command(flatten)]
    pub(crate) server: ServerOptions,

    /// [HOST:PORT] then the stored names, folders (`photos/`) or glob patterns to delete.
    #[arg(value_name = "[HOST:PORT] NAME", required = true)]
    pub(crate) args: Vec<String>,

    /// Delete what patterns and folders match without asking (needed without a terminal).
    #[arg(short, long)]
    pub(crate) yes: bool,
}

/// Arguments of `ftc info`.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Which server, and how to print.
    #[command(flatten)]
    pub(crate) server: ServerOptions,

    /// The server, unless configured.
    #[arg(value_name = "HOST:PORT", num_args = 0..=1)]
    pub(crate) args: Vec<String>,
}

/// Arguments of `ftc shell`.
#[derive(Debug, Args)]
pub(crate) struct ShellArgs {
    /// Server as HOST[:PORT].
    #[arg(short, long, value_name = "HOST:PORT")]
    pub(crate) server: Option<ServerAddress>,

    /// Credentials and the expected certificate.
    #[command(flatten)]
    pub(crate) access: AccessOptions,

    /// The server, unless configured.
    #[arg(value_name = "HOST:PORT", num_args = 0..=1)]
    pub(crate) args: Vec<String>,
}

/// Arguments of `ftc listen`.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Which server, and how to print.
    #[command(flatten)]
    pub(crate) server: ServerOptions,

    /// The server, unless configured.
    #[arg(value_name = "HOST:PORT", num_args = 0..=1)]
    pub(crate) args: Vec<String>,

    /// Folder to save into (default: the current folder, or `output` from the config file).
    #[arg(short, long, value_name = "DIR")]
    pub(crate) output: Option<PathBuf>,

    /// Accept offers from this user without asking (repeat for more).
    #[arg(long, value_name = "USER")]
    pub(crate) accept_from: Vec<String>,

    /// Accept every offer without asking.
    #[arg(short, long)]
    pub(crate) yes: bool,

    /// Have the server decline this user's offers unseen (repeat for more).
    #[arg(long, value_name = "USER")]
    pub(crate) block: Vec<String>,

    /// Exit after the first offer (accepted and received, or declined).
    #[arg(long)]
    pub(crate) once: bool,

    /// Replace local files of the same name.
    #[arg(long)]
    pub(crate) force: bool,
}

/// Arguments of `ftc users`.
#[derive(Debug, Args)]
pub(crate) struct UsersArgs {
    /// Which server, and how to print.
    #[command(flatten)]
    pub(crate) server: ServerOptions,

    /// The server, unless configured.
    #[arg(value_name = "HOST:PORT", num_args = 0..=1)]
    pub(crate) args: Vec<String>,
}
