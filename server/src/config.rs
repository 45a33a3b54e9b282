//! Command-line flags of `fts` and the validated configuration built from them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use ft_protocol::{Role, DEFAULT_PORT};

/// `fts`: receives files from `ftc`, verifies each with BLAKE3 and records it in a catalog.
#[derive(Debug, Parser)]
#[command(
    name = "fts",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FT_GIT_COMMIT"), ")"),
    after_help = "Examples:\n  fts --dir ./received\n  fts --dir /srv/inbox --listen 127.0.0.1:0\n  \
                  fts --config /etc/ft/fts.toml\n  \
                  fts --dir /srv/inbox user add alice --role write\n  \
                  fts --dir /srv/inbox user token alice\n\n\
                  On its first start fts makes a TLS certificate in DIR/.fts/ and a user 'admin',\n\
                  whose token and connect string it prints once.\n\n\
                  Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM) or a user command done,\n\
                  1 on a startup error, 2 on a bad command line or configuration file, or a user\n\
                  command refused.\n\
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change the level."
)]
pub struct Args {
    /// Directory where received files are stored (created if missing).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["man", "print_config"])]
    pub dir: Option<PathBuf>,

    /// Read settings from this TOML file: its keys are these long flags (e.g.
    /// `max-connections = 64`); flags on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective settings (file and flags) as a configuration file, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Print the man page (roff) to stdout and exit.
    #[arg(long)]
    pub man: bool,

    /// Address to listen on; port 0 picks a free port. The chosen address is printed
    /// on stdout as `listening on IP:PORT`.
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    pub listen: SocketAddr,

    /// Clients served at once (at most 4096); more are refused with a "busy" error.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_connections: u32,

    /// Clients served at once from one IP address (NAT gateways and build farms share one),
    /// so one host cannot take every slot; more are refused with a "busy" error.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_connections_per_address: u32,

    /// Largest file accepted, in bytes (suffixes K, M, G, T are powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "1T", value_parser = parse_size)]
    pub max_file_size: u64,

    /// Memory all clients together may make the server hold: each connection's working set
    /// (1.5 MiB, reserved when it is admitted; past the budget new clients are told busy),
    /// small files gathered in memory and resume offers (taken only while free; otherwise
    /// small files stream through the disk).
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_size)]
    pub max_memory: u64,

    /// Interrupted uploads kept for resume per user; past it, starting a new upload removes
    /// that user's oldest.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_partials_per_user: u64,

    /// Bytes of interrupted uploads kept for resume per user; past it, starting a new upload
    /// removes that user's oldest (a single upload is bounded by --max-file-size instead).
    #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = parse_size)]
    pub max_partial_bytes_per_user: u64,

    /// Time a new client has for the TLS handshake, Hello and its login, all told (e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// A client silent for this long is disconnected (e.g. 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Interrupted uploads are kept this long for resume, then removed (e.g. 24h).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub partial_ttl: Duration,

    /// Files left for a user who was not online (`ftc send --to USER --leave`) wait this
    /// long for the user to listen, then are removed (e.g. 7d).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub inbox_ttl: Duration,

    /// Bytes that may wait in one user's inbox; a `--leave` that does not fit is refused.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub inbox_quota: u64,

    /// On SIGINT/SIGTERM, time granted to uploads in flight before they are cut.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// TLS certificate (PEM) to present instead of the one made in DIR/.fts/; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Let clients without credentials in, with this role, in the namespace `anonymous`
    /// (upload, read or write). Off by default.
    #[arg(long, value_name = "ROLE", value_parser = parse_anonymous_role)]
    pub anonymous: Option<Role>,

    /// Host name put in connect strings (default: the listening address, or this machine's
    /// name when listening on all addresses).
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,

    /// Manage users (works whether or not a server runs; changes apply at once).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `fts ... SUBCOMMAND`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Users, their roles and tokens.
    #[command(subcommand)]
    User(UserCommand),
    /// Interrupted uploads kept for resume: lists them (owner, size, age), or purges them.
    Partials {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<PartialsCommand>,
    },
}

/// `fts --dir DIR partials ...`.
#[derive(Debug, Subcommand)]
pub enum PartialsCommand {
    /// Lists them, oldest first.
    #[command(visible_alias = "ls")]
    List,
    /// Removes them (an upload still in progress fails and its client sends it again).
    Purge {
        /// Only this user's.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Only those untouched for at least this long (e.g. 1h).
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
}

/// `fts --dir DIR user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Adds a user; prints its connect string, then its token as the last line.
    Add {
        /// The user's name: lowercase letters, digits, '_' and '-' (its files go to DIR/NAME/).
        name: String,
        /// admin: everything, every namespace; write: upload, overwrite, list, get, delete in
        /// its own; upload: only send new files (a drop box); read: only list and get.
        #[arg(long, value_name = "ROLE", default_value = "write", value_parser = parse_role)]
        role: Role,
    },
    /// Lists the users and their roles.
    #[command(visible_alias = "ls")]
    List,
    /// Removes a user: its sessions end at their next request. Its files stay.
    #[command(visible_alias = "rm")]
    Remove {
        /// The user's name.
        name: String,
    },
    /// Gives a user a new token (the old one stops working); prints it as the last line.
    Token {
        /// The user's name.
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("unknown role {text:?} (admin, write, upload, read)"))
}

fn parse_anonymous_role(text: &str) -> Result<Role, String> {
    match parse_role(text)? {
        Role::Admin => Err("anonymous clients cannot be admins (upload, read, write)".to_owned()),
        role => Ok(role),
    }
}

/// Limits a session enforces on its client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`Args::max_connections`].
    pub max_connections: usize,
    /// See [`Args::max_connections_per_address`].
    pub max_connections_per_address: usize,
    /// See [`Args::max_file_size`].
    pub max_file_size: u64,
    /// See [`Args::max_memory`].
    pub max_memory: u64,
    /// See [`Args::max_partials_per_user`] and [`Args::max_partial_bytes_per_user`].
    pub partial_quota: crate::store::PartialQuota,
    /// See [`Args::handshake_timeout`].
    pub handshake_timeout: Duration,
    /// See [`Args::idle_timeout`].
    pub idle_timeout: Duration,
    /// See [`Args::shutdown_grace`].
    pub shutdown_grace: Duration,
    /// See [`Args::partial_ttl`].
    pub partial_ttl: Duration,
    /// See [`Args::inbox_ttl`].
    pub inbox_ttl: Duration,
    /// See [`Args::inbox_quota`].
    pub inbox_quota: u64,
}

impl From<&Args> for Limits {
    fn from(args: &Args) -> Self {
        Self {
            max_connections: args.max_connections as usize,
            max_connections_per_address: args.max_connections_per_address as usize,
            max_file_size: args.max_file_size,
            max_memory: args.max_memory,
            partial_quota: crate::store::PartialQuota {
                files: args.max_partials_per_user,
                bytes: args.max_partial_bytes_per_user,
            },
            handshake_timeout: args.handshake_timeout,
            idle_timeout: args.idle_timeout,
            shutdown_grace: args.shutdown_grace,
            partial_ttl: args.partial_ttl,
            inbox_ttl: args.inbox_ttl,
            inbox_quota: args.inbox_quota,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from(&Args::parse_from(["fts", "--dir", "."]))
    }
}

/// Parses `123`, `64K`, `10M`, `2G`, `1T` (binary multiples) into bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let power = match unit.to_ascii_uppercase() {
                'K' => 1,
                'M' => 2,
                'G' => 3,
                'T' => 4,
                _ => return Err(format!("unknown size suffix '{unit}' (use K, M, G or T)")),
            };
            (&text[..at], 1024u64.pow(power))
        }
        _ => (text, 1),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 1048576, 512K, 10G)"))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn defaults_are_sane() {
        let limits = Limits::default();
        assert_eq!(limits.max_file_size, 1 << 40);
        assert_eq!(limits.max_connections, 256);
    }
}
