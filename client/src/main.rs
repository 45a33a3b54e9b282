//! `ftc`: parses arguments, finds the server, and runs one command (or the shell).

mod cli;
mod commands;
mod config;
mod exit;
mod output;
mod progress;
mod shell;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser};
use ft_client::{ServerAddress, Session};
use ft_protocol::ConflictPolicy;

use crate::{
    cli::{Cli, Command},
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
            let mut session = Session::new(server);
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
            let mut session = Session::new(server);
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
            commands::list(&mut Session::new(server), pattern, json).await
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
            commands::rm(&mut Session::new(server), &names, json).await
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
            commands::info(&mut Session::new(server), json).await
        }
        Command::Shell(args) => {
            let (server, _) = resolve(settings, args.server, args.args, Operands::Nothing, false)?;
            shell::run(Session::new(server), settings).await
        }
        Command::Completions { .. } | Command::Man => Exit::Success,
    };
    Ok(exit)
}
