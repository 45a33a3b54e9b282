//! `ftc`: parses arguments, finds the server, and runs one command (or the shell).

mod cli;
mod commands;
mod config;
mod exit;
mod login;
mod output;
mod progress;
mod shell;
mod terminal;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser};
use ft_client::{Access, ServerAddress, Session};
use ft_protocol::ConflictPolicy;
use ft_protocol::Credentials;

use crate::{
    cli::{AccessOptions, Cli, Command},
    commands::Style,
    config::{Operands, Settings},
    exit::Exit,
    output::report_error,
};

/// mimalloc instead of glibc's allocator: buffers are allocated on the network thread and
/// freed on the disk threads, a pattern glibc answers with arena growth, trimming and page
/// faults, which cost a large share of the time on many small files.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for the process, chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exit = match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ftc", &mut std::io::stdout());
            Exit::Success
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => Exit::Success,
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

/// Whether bars may be drawn: not disabled, and stderr is a terminal.
fn bars(no_progress: bool, settings: &Settings) -> bool {
    !no_progress && settings.progress != Some(false) && std::io::stderr().is_terminal()
}

/// Picks a command's server and its other operands (see [`config::resolve`]); when that is
/// impossible, reports why and returns the exit status.
fn resolve(
    settings: &Settings,
    flag: Option<ServerAddress>,
    args: Vec<String>,
    operands: Operands,
    json: bool,
) -> Result<(ServerAddress, Vec<String>), Exit> {
    config::resolve(settings, flag, args, operands).map_err(|err| report_error(err, json))
}

/// How to log in to `server` and which certificate to expect: flags and the environment
/// first, then the config file (whose fingerprint is pinned only for its own server).
fn access(
    settings: &Settings,
    options: AccessOptions,
    server: &ServerAddress,
    json: bool,
) -> Result<Access, Exit> {
    let user = options.user.or_else(|| settings.user.clone());
    let token = options.token.or_else(|| settings.token.clone());
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
    Ok(Access {
        credentials,
        pinned,
        known_servers: config::known_servers(),
        on_first_use: Some(first_use_notice()),
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

/// A session with `server`, logging in as `options` and the settings say.
fn session(
    settings: &Settings,
    options: AccessOptions,
    server: ServerAddress,
    json: bool,
) -> Result<Session, Exit> {
    let access = access(settings, options, &server, json)?;
    Ok(Session::new(server, access))
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
            let json = args.server.json;
            let (server, paths) = resolve(
                settings,
                args.server.server,
                args.args,
                Operands::Paths,
                json,
            )?;
            let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
            let conflict = if args.overwrite {
                ConflictPolicy::Overwrite
            } else {
                ConflictPolicy::KeepBoth
            };
            let style = Style {
                json,
                bars: bars(args.transfer.no_progress, settings),
            };
            let mut session = session(settings, args.server.access, server, json)?;
            let compress = args.compress || settings.compress == Some(true);
            commands::send(
                &mut session,
                &paths,
                conflict,
                retries(args.transfer.retries),
                compress,
                style,
            )
            .await
        }
        Command::Get(args) => {
            let json = args.server.json;
            let (server, names) = resolve(
                settings,
                args.server.server,
                args.args,
                Operands::Names,
                json,
            )?;
            let out_dir = args
                .output
                .or_else(|| settings.output.clone())
                .unwrap_or_else(|| PathBuf::from("."));
            let style = Style {
                json,
                bars: bars(args.transfer.no_progress, settings),
            };
            let mut session = session(settings, args.server.access, server, json)?;
            commands::get(
                &mut session,
                &names,
                &out_dir,
                args.force,
                retries(args.transfer.retries),
                style,
            )
            .await
        }
        Command::List(args) => {
            let json = args.server.json;
            let (server, mut rest) = resolve(
                settings,
                args.server.server,
                args.args,
                Operands::Names,
                json,
            )?;
            if rest.len() > 1 {
                eprintln!("ftc: error: list takes at most one PATTERN");
                return Err(Exit::BadInput);
            }
            let pattern = rest.pop();
            let mut session = session(settings, args.server.access, server, json)?;
            commands::list(&mut session, pattern, json).await
        }
        Command::Rm(args) => {
            let json = args.server.json;
            let (server, names) = resolve(
                settings,
                args.server.server,
                args.args,
                Operands::Names,
                json,
            )?;
            let mut session = session(settings, args.server.access, server, json)?;
            commands::rm(&mut session, &names, json).await
        }
        Command::Info(args) => {
            let json = args.server.json;
            let (server, _) = resolve(
                settings,
                args.server.server,
                args.args,
                Operands::Nothing,
                json,
            )?;
            let mut session = session(settings, args.server.access, server, json)?;
            commands::info(&mut session, json).await
        }
        Command::Shell(args) => {
            let (server, _) = resolve(settings, args.server, args.args, Operands::Nothing, false)?;
            shell::run(session(settings, args.access, server, false)?, settings).await
        }
        Command::Login(args) => login::login(args, settings).await,
        Command::Completions { .. } | Command::Man => Exit::Success,
    };
    Ok(exit)
}
