//! `ftc shell`: an interactive session over one connection. With a terminal it offers line
//! editing, completion and a history kept between sessions (see `input.rs`); with piped
//! stdin it reads one command per line, so it is scriptable. A failed command is reported and
//! the session goes on; `cd` and `lcd` move in the server's and the local folders.

mod input;

use std::{io::IsTerminal, path::PathBuf};

use ft_client::Session;
use ft_protocol::ConflictPolicy;

use crate::{commands, commands::Style, config::Settings, exit::Exit};
use input::{Input, RemoteNames};

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
  cd [FOLDER] / pwd            move in the server's folders (names are relative to it)
  lcd [FOLDER] / lpwd          move in the local folders
  help                         this text
  quit                         leave (also: exit, Ctrl-D)
Quote names with spaces: get 'my file.txt'";

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
    let remote_names = RemoteNames::default();
    let mut input = Input::open(remote_names.clone());
    if interactive {
        refresh_names(&mut session, &remote_names).await;
    }
    let mut worst = Exit::Success;
    let mut remote = RemoteDir::default();
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
                    let pattern = match args.first() {
                        Some(pattern) => Some(remote.resolve(pattern)),
                        None => remote.everything(),
                    };
                    let exit = commands::list(&mut session, pattern, None, false).await;
                    if interactive {
                        refresh_names(&mut session, &remote_names).await;
                    }
                    exit
                }
            }
            "cd" => match remote.change(args.first().map(String::as_str)) {
                Ok(()) => Exit::Success,
                Err(message) => {
                    eprintln!("ftc: cd: {message}");
                    Exit::SomeFilesFailed
                }
            },
            "pwd" => {
                println!("/{}", remote.0);
                Exit::Success
            }
            "lcd" => {
                let target = args
                    .first()
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("."));
                match std::env::set_current_dir(&target) {
                    Ok(()) => Exit::Success,
                    Err(err) => {
                        eprintln!("ftc: lcd: {}: {err}", target.display());
                        Exit::SomeFilesFailed
                    }
                }
            }
            "lpwd" => {
                match std::env::current_dir() {
                    Ok(dir) => println!("{}", dir.display()),
                    Err(err) => eprintln!("ftc: lpwd: {err}"),
                }
                Exit::Success
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
                    into: (!remote.0.is_empty()).then(|| remote.0.clone()),
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
                    let names: Vec<String> =
                        get.names.iter().map(|name| remote.resolve(name)).collect();
                    commands::get(&mut session, &names, &out_dir, options, style).await
                }
                None => usage("get NAME... [-o DIR] [--force]"),
            },
            "rm" | "delete" => {
                let yes = args.iter().any(|arg| arg == "--yes" || arg == "-y");
                let names: Vec<String> = args
                    .iter()
                    .filter(|arg| *arg != "--yes" && *arg != "-y")
                    .map(|name| remote.resolve(name))
                    .collect();
                commands::rm(&mut session, &names, yes, false).await
            }
            "info" => commands::info(&mut session, false).await,
            other => {
                // A typo is a message, not a failure of the session.
                eprintln!("ftc: unknown command '{other}'; type 'help'");
                Exit::Success
            }
        };
        worst = worst.max(exit);
    }
    worst
}

/// The server folder the shell is in: names typed are relative to it ("" is the top).
#[derive(Debug, Default)]
struct RemoteDir(String);

impl RemoteDir {
    /// `name` as the server knows it: under this folder, or from the top with a leading `/`.
    fn resolve(&self, name: &str) -> String {
        if let Some(absolute) = name.strip_prefix('/') {
            return absolute.to_owned();
        }
        if self.0.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.0)
        }
    }

    /// The pattern for "everything here" (`None` at the top: the whole catalog).
    fn everything(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| format!("{}/*", self.0))
    }

    /// `cd`: into a folder (`..` up, `/` or nothing the top).
    fn change(&mut self, to: Option<&str>) -> Result<(), String> {
        let Some(to) = to else {
            self.0.clear();
            return Ok(());
        };
        let mut parts: Vec<&str> = if to.starts_with('/') {
            Vec::new()
        } else {
            self.0.split('/').filter(|p| !p.is_empty()).collect()
        };
        for part in to.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err("already at the top".into());
                    }
                }
                part if part.chars().any(char::is_control) => {
                    return Err(format!("{to:?} is not a folder name"))
                }
                part => parts.push(part),
            }
        }
        self.0 = parts.join("/");
        Ok(())
    }
}

/// Reloads the stored names completion offers (best effort).
async fn refresh_names(session: &mut Session, names: &RemoteNames) {
    let listed = match session.client().await {
        Ok(client) => client.list(None).await,
        Err(err) => Err(err),
    };
    if let Ok(entries) = listed {
        let mut known = names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *known = entries.into_iter().map(|entry| entry.name).collect();
    }
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
    fn cd_moves_in_the_servers_folders() {
        let mut here = RemoteDir::default();
        assert_eq!(here.resolve("a.txt"), "a.txt");
        here.change(Some("photos/2024")).unwrap();
        assert_eq!(here.resolve("a.jpg"), "photos/2024/a.jpg");
        assert_eq!(here.resolve("/top.txt"), "top.txt");
        assert_eq!(here.everything().unwrap(), "photos/2024/*");
        here.change(Some("..")).unwrap();
        assert_eq!(here.0, "photos");
        here.change(Some("/other")).unwrap();
        assert_eq!(here.0, "other");
        assert!(here.change(Some("../..")).is_err());
        here.change(None).unwrap();
        assert_eq!(here.everything(), None);
    }

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
