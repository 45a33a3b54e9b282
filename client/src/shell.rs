//! `ftc shell`: an interactive session over one connection. With a terminal it offers line
//! editing and history; with piped stdin it reads one command per line, so it is scriptable.
//! A failed command is reported and the session goes on.

use std::{
    io::{BufRead, IsTerminal},
    path::PathBuf,
};

use ft_client::Session;
use ft_protocol::ConflictPolicy;
use rustyline::{error::ReadlineError, history::MemHistory, Editor};

use crate::{commands, commands::Style, config::Settings, exit::Exit};

const HELP: &str = "\
commands:
  ls [PATTERN]                 list stored files (glob: * ? [abc])
  put PATH... [--overwrite] [--compress]
                               upload files and folders
  get NAME... [-o DIR] [--force]
                               download stored files, folders (photos/) and patterns
                               (into the current folder by default)
  rm NAME... [--yes]           delete stored files (folders and patterns: --yes)
  info                         server version, usage and limits
  help                         this text
  quit                         leave (also: exit, Ctrl-D)
Quote names with spaces: get 'my file.txt'";

/// Where command lines come from.
enum Input {
    Terminal(Box<Editor<(), MemHistory>>),
    Piped(std::io::StdinLock<'static>),
}

impl Input {
    fn open() -> Self {
        if std::io::stdin().is_terminal() {
            let config = rustyline::Config::default();
            if let Ok(editor) = Editor::with_history(config, MemHistory::new()) {
                return Input::Terminal(Box::new(editor));
            }
        }
        Input::Piped(std::io::stdin().lock())
    }

    /// The next line, or `None` at the end of input.
    fn next_line(&mut self, prompt: &str) -> Option<String> {
        match self {
            Input::Terminal(editor) => loop {
                match tokio::task::block_in_place(|| editor.readline(prompt)) {
                    Ok(line) => {
                        let _ = editor.add_history_entry(line.as_str());
                        return Some(line);
                    }
                    // Ctrl-C abandons the line, not the session.
                    Err(ReadlineError::Interrupted) => continue,
                    Err(_) => return None,
                }
            },
            Input::Piped(stdin) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => None,
                    Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
                }
            }
        }
    }
}

/// Runs the shell until `quit` or end of input. Exits with the worst status any command
/// earned, so a script learns that something failed.
pub(crate) async fn run(mut session: Session, settings: &Settings) -> Exit {
    let interactive = std::io::stdin().is_terminal();
    let prompt = format!("ftc {}> ", session.address());
    if interactive {
        eprintln!(
            "connected to {} — type 'help' for commands",
            session.address()
        );
    }
    let style = Style {
        json: false,
        bars: interactive && std::io::stderr().is_terminal() && settings.progress != Some(false),
        verbosity: crate::output::Verbosity::Normal,
    };
    let retries = settings.retries.unwrap_or(ft_client::DEFAULT_RETRIES);
    let mut input = Input::open();
    let mut worst = Exit::Success;
    while let Some(line) = input.next_line(&prompt) {
        let Some(words) = shlex::split(&line) else {
            eprintln!("ftc: error: unbalanced quotes");
            worst = worst.max(Exit::BadInput);
            continue;
        };
        let Some((command, args)) = words.split_first() else {
            continue;
        };
        let exit = match command.as_str() {
            "quit" | "exit" => break,
            "help" | "?" => {
                println!("{HELP}");
                Exit::Success
            }
            "ls" | "list" => {
                if args.len() > 1 {
                    usage("ls [PATTERN]")
                } else {
                    commands::list(&mut session, args.first().cloned(), None, false).await
                }
            }
            "put" | "send" => {
                let overwrite = args.iter().any(|arg| arg == "--overwrite");
                let compress =
                    args.iter().any(|arg| arg == "--compress") || settings.compress == Some(true);
                let paths: Vec<PathBuf> = args
                    .iter()
                    .filter(|arg| *arg != "--overwrite" && *arg != "--compress")
                    .map(PathBuf::from)
                    .collect();
                let conflict = if overwrite {
                    ConflictPolicy::Overwrite
                } else {
                    ConflictPolicy::KeepBoth
                };
                let choices = commands::SendChoices {
                    options: Some(ft_client::SendOptions {
                        retries,
                        compress,
                        ..ft_client::SendOptions::new(conflict)
                    }),
                    ..commands::SendChoices::default()
                };
                commands::send(&mut session, &paths, choices, style).await
            }
            "get" => match GetLine::parse(args) {
                Some(get) => {
                    let out_dir = get
                        .out_dir
                        .or_else(|| settings.output.clone())
                        .unwrap_or_else(|| PathBuf::from("."));
                    let options = ft_client::GetOptions {
                        force: get.force,
                        retry: ft_client::SendOptions {
                            retries,
                            ..ft_client::SendOptions::new(ConflictPolicy::KeepBoth)
                        },
                        expected_bytes: 0,
                    };
                    commands::get(&mut session, &get.names, &out_dir, options, style).await
                }
                None => usage("get NAME... [-o DIR] [--force]"),
            },
            "rm" | "delete" => {
                let yes = args.iter().any(|arg| arg == "--yes" || arg == "-y");
                let names: Vec<String> = args
                    .iter()
                    .filter(|arg| *arg != "--yes" && *arg != "-y")
                    .cloned()
                    .collect();
                commands::rm(&mut session, &names, yes, false).await
            }
            "info" => commands::info(&mut session, false).await,
            other => {
                eprintln!("ftc: unknown command '{other}'; type 'help'");
                Exit::BadInput
            }
        };
        worst = worst.max(exit);
    }
    worst
}

fn usage(text: &str) -> Exit {
    eprintln!("ftc: usage: {text}");
    Exit::BadInput
}

/// The arguments of a shell `get`.
struct GetLine {
    names: Vec<String>,
    out_dir: Option<PathBuf>,
    force: bool,
}

impl GetLine {
    fn parse(args: &[String]) -> Option<Self> {
        let mut get = GetLine {
            names: Vec::new(),
            out_dir: None,
            force: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-o" | "--output" => get.out_dir = Some(PathBuf::from(args.next()?)),
                "--force" => get.force = true,
                _ => get.names.push(arg.clone()),
            }
        }
        (!get.names.is_empty()).then_some(get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_lines_parse_flags_anywhere() {
        let args: Vec<String> = ["a", "-o", "out", "b c", "--force"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let get = GetLine::parse(&args).unwrap();
        assert_eq!(get.names, ["a", "b c"]);
        assert_eq!(get.out_dir, Some(PathBuf::from("out")));
        assert!(get.force);
        assert!(GetLine::parse(&["-o".to_string()]).is_none());
    }
}
