//! `ftc`: parses arguments, finds the server, and runs one command (or the shell).

mod cli;
mod commands;
mod config;
mod exit;
mod listing;
mod login;
mod output;
mod progress;
mod relay_commands;
mod select;
mod shell;
mod terminal;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser};
use ft_client::{Access, SendOptions, ServerAddress, Session};
use ft_protocol::ConflictPolicy;
use ft_protocol::Credentials;

use crate::{
    cli::{AccessOptions, Cli, Command, ServerOptions},
    commands::Style,
    config::{Operands, Settings},
    exit::Exit,
    output::{report_error, Verbosity},
};

/// mimalloc instead of glibc's allocator: buffers are allocated on the network thread and
/// freed on the disk threads, a pattern glibc answers with arena growth, trimming and page
/// faults, which cost a large share of the time on many small files.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ft_tuning::use_fast_copies();
    start()
}

#[tokio::main]
async fn start() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for the process, chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exit = match cli.command {
        Command::Completions { shell } => {
            // Generated into memory, then written: a reader that stops early (`| head`) ends
            // the output quietly instead of a panic inside the generator.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ftc", &mut script);
            write_stdout(&script, "the completions")
        }
        Command::Man => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => write_stdout(&page, "the man page"),
                Err(err) => {
                    eprintln!("ftc: error: cannot write the man page: {err}");
                    Exit::BadInput
                }
            }
        }
        command => match config::load() {
            Ok(settings) => run(command, &settings).await.unwrap_or_else(|exit| exit),
            Err(err) => report_error(err, false),
        },
    };
    exit.into()
}

/// Writes `text` to stdout; a closed pipe (the reader had enough) is not an error.
fn write_stdout(text: &[u8], what: &str) -> Exit {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Ok(()) => Exit::Success,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Exit::Success,
        Err(err) => {
            eprintln!("ftc: error: cannot write {what}: {err}");
            Exit::BadInput
        }
    }
}

/// How a transfer command shows its results.
fn style(server: &ServerOptions, transfer: &cli::TransferOptions, settings: &Settings) -> Style {
    let verbosity = if server.quiet {
        Verbosity::Quiet
    } else if server.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    Style {
        json: server.json,
        bars: bars(transfer.no_progress, settings),
        verbosity,
    }
}

/// Whether bars may be drawn: not disabled, and stderr is a terminal.
fn bars(no_progress: bool, settings: &Settings) -> bool {
    !no_progress && settings.progress != Some(false) && std::io::stderr().is_terminal()
}

/// How to log in to `server` and which certificate to expect: flags and the environment
/// first, then the config file (whose fingerprint is pinned only for its own server).
fn access(
    settings: &Settings,
    options: AccessOptions,
    server: &ServerAddress,
    json: bool,
    connect_timeout: std::time::Duration,
) -> Result<Access, Exit> {
    // The config file's login belongs to its own server: another address given on the
    // command line (a typo, a second server) must never receive that token.
    let own_server =
        settings.file_server.is_none() || settings.file_server.as_ref() == Some(server);
    let from_file = |value: &Option<String>| value.clone().filter(|_| own_server);
    let user = options.user.or_else(|| from_file(&settings.user));
    let token = options.token.or_else(|| from_file(&settings.token));
    let credentials = match (user, token) {
        (Some(user), Some(token)) => Some(Credentials { user, token }),
        (None, None) => None,
        (Some(_), None) => {
            let err = anyhow::anyhow!(
                "a user name but no token: pass --token, set FTC_TOKEN, or run `ftc login`"
            );
            return Err(report_error(err, json));
        }
        (None, Some(_)) => {
            let err = anyhow::anyhow!("a token but no user name: pass --user or set FTC_USER");
            return Err(report_error(err, json));
        }
    };
    let pinned = options.fingerprint.or_else(|| {
        settings
            .fingerprint
            .filter(|_| settings.file_server.as_ref() == Some(server))
    });
    let known_servers = config::known_servers();
    if pinned.is_none() && known_servers.is_none() {
        // Without a known servers file, the first certificate would be trusted every time,
        // silently: under cron or a service (no HOME), a pin must be given.
        let err = anyhow::anyhow!(
            "no HOME or XDG_CONFIG_HOME to record {server}'s certificate in: pass \
             --fingerprint SHA256:... (or set FTC_FINGERPRINT) to say which one to trust"
        );
        return Err(report_error(err, json));
    }
    Ok(Access {
        credentials,
        pinned,
        known_servers,
        on_first_use: Some(first_use_notice()),
        connect_timeout: Some(connect_timeout),
    })
}

/// Says on stderr, once per server, that its certificate was trusted on first use.
fn first_use_notice() -> ft_client::FirstUseNotice {
    std::sync::Arc::new(
        |address: &ServerAddress, fingerprint, path: &std::path::Path| {
            eprintln!(
                "ftc: first connection to {address}: trusting its certificate {fingerprint} \
             (recorded in {})",
                path.display()
            );
        },
    )
}

/// A command's session and its other operands: the server picked (see [`config::resolve`])
/// and the login and certificate to use with it. When either is impossible, the reason is
/// reported and the exit status returned.
fn session(
    settings: &Settings,
    options: ServerOptions,
    args: Vec<String>,
    operands: Operands,
) -> Result<(Session, Vec<String>), Exit> {
    let json = options.json;
    let (server, rest) = config::resolve(settings, options.server, args, operands)
        .map_err(|err| report_error(err, json))?;
    let access = access(
        settings,
        options.access,
        &server,
        json,
        options.connect_timeout,
    )?;
    Ok((Session::new(server, access), rest))
}

/// Runs a command that talks to a server. `Err` is the exit status of a command that could
/// not start, its reason already reported.
async fn run(command: Command, settings: &Settings) -> Result<Exit, Exit> {
    let retries = |flag: Option<u32>| {
        flag.or(settings.retries)
            .unwrap_or(ft_client::DEFAULT_RETRIES)
    };
    let exit = match command {
        Command::Send(args) => {
            let style = style(&args.server, &args.transfer, settings);
            let (mut session, paths) = session(settings, args.server, args.args, Operands::Paths)?;
            let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
            if !args.to.is_empty() {
                let to = args
                    .to
                    .into_iter()
                    .filter(|user| !user.is_empty())
                    .collect();
                let offer = relay_commands::Offering {
                    to,
                    timeout: args.offer_timeout,
                    leave: args.leave,
                    bwlimit: args.transfer.bwlimit,
                };
                return Ok(relay_commands::send_to(&mut session, &paths, offer, style).await);
            }
            let conflict = if args.overwrite {
                ConflictPolicy::Overwrite
            } else if args.skip_existing {
                ConflictPolicy::Skip
            } else {
                ConflictPolicy::KeepBoth
            };
            let options = SendOptions {
                retries: retries(args.transfer.retries),
                compress: args.compress || settings.compress == Some(true),
                checksum: args.checksum,
                bwlimit: args.transfer.bwlimit,
                ..SendOptions::new(conflict)
            };
            let choices = commands::SendChoices {
                options: Some(options),
                into: args.into,
                strict: args.strict,
            };
            commands::send(&mut session, &paths, choices, style).await
        }
        Command::Get(args) => {
            let style = style(&args.server, &args.transfer, settings);
            let (mut session, names) = session(settings, args.server, args.args, Operands::Names)?;
            let out_dir = args
                .output
                .or_else(|| settings.output.clone())
                .unwrap_or_else(|| PathBuf::from("."));
            let options = ft_client::GetOptions {
                force: args.force,
                retry: SendOptions {
                    retries: retries(args.transfer.retries),
                    bwlimit: args.transfer.bwlimit,
                    ..SendOptions::new(ConflictPolicy::KeepBoth)
                },
                expected_bytes: 0,
            };
            commands::get(&mut session, &names, &out_dir, options, style).await
        }
        Command::List(args) => {
            let json = args.server.json;
            let (mut session, mut rest) =
                session(settings, args.server, args.args, Operands::Names)?;
            if rest.len() > 1 {
                eprintln!("ftc: error: list takes at most one PATTERN");
                return Err(Exit::BadInput);
            }
            let pattern = rest.pop();
            let style = listing::ListStyle {
                bytes: args.bytes,
                utc: args.utc,
                long: args.long,
                sort: args.sort,
                folders: args.folders,
                owners: false,
            };
            commands::list(&mut session, pattern, Some(style), json).await
        }
        Command::Rm(args) => {
            let json = args.server.json;
            let (mut session, names) = session(settings, args.server, args.args, Operands::Names)?;
            commands::rm(&mut session, &names, args.yes, json).await
        }
        Command::Info(args) => {
            let json = args.server.json;
            let (mut session, _) = session(settings, args.server, args.args, Operands::Nothing)?;
            commands::info(&mut session, json).await
        }
        Command::Shell(args) => {
            let options = ServerOptions {
                server: args.server,
                access: args.access,
                json: false,
                quiet: false,
                verbose: false,
                connect_timeout: ft_client::DEFAULT_CONNECT_TIMEOUT,
            };
            let (session, _) = session(settings, options, args.args, Operands::Nothing)?;
            shell::run(session, settings).await
        }
        Command::Listen(args) => {
            let json = args.server.json;
            let (mut session, _) = session(settings, args.server, args.args, Operands::Nothing)?;
            let options = ft_client::relay::ListenOptions {
                out_dir: args
                    .output
                    .or_else(|| settings.output.clone())
                    .unwrap_or_else(|| PathBuf::from(".")),
                force: args.force,
                blocked: args.block,
                once: args.once,
            };
            relay_commands::listen(&mut session, options, args.accept_from, args.yes, json).await
        }
        Command::Users(args) => {
            let json = args.server.json;
            let (mut session, _) = session(settings, args.server, args.args, Operands::Nothing)?;
            relay_commands::users(&mut session, json).await
        }
        Command::Inbox(args) => {
            let json = args.server.json;
            let (mut session, _) = session(settings, args.server, args.args, Operands::Nothing)?;
            relay_commands::inbox(&mut session, json).await
        }
        Command::Login(args) => login::login(args, settings).await,
        Command::Completions { .. } | Command::Man => Exit::Success,
    };
    Ok(exit)
}
