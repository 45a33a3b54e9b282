//! Where the shell's command lines come from: a terminal with line editing, tab completion
//! (commands, local paths, remote names) and a history kept between sessions, or piped
//! stdin, one command per line. Pasted lines run one by one either way.

use std::{
    collections::VecDeque,
    io::{BufRead, IsTerminal},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
};

use rustyline::{
    completion::{Completer, FilenameCompleter, Pair},
    error::ReadlineError,
    highlight::Highlighter,
    hint::Hinter,
    history::DefaultHistory,
    validate::Validator,
    Context, Editor, Helper,
};

/// The shell's commands, for completion.
pub(super) const COMMANDS: [&str; 14] = [
    "ls", "put", "get", "rm", "info", "cd", "pwd", "lcd", "lpwd", "help", "quit", "exit", "send",
    "delete",
];

/// Lines kept in the history file.
const HISTORY_LINES: usize = 1000;

/// Stored names known from the last listing, for completing `get`, `rm`, `cd` and `ls`.
pub(super) type RemoteNames = Arc<Mutex<Vec<String>>>;

/// Completes the word under the cursor.
pub(super) struct ShellHelper {
    files: FilenameCompleter,
    remote: RemoteNames,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |at| at + 1);
        let word = &before[start..];
        let command = before.split_whitespace().next().unwrap_or("");
        let pair = |text: &str| Pair {
            display: text.to_owned(),
            replacement: text.to_owned(),
        };
        if start == 0 {
            let found = COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| pair(c))
                .collect();
            return Ok((0, found));
        }
        match command {
            "put" | "send" | "lcd" => self.files.complete(line, pos, ctx),
            "get" | "rm" | "delete" | "cd" | "ls" => {
                let names = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
                let found = names
                    .iter()
                    .filter(|name| name.starts_with(word))
                    .take(200)
                    .map(|name| pair(&shell_quoted(name)))
                    .collect();
                Ok((start, found))
            }
            _ => Ok((start, Vec::new())),
        }
    }
}

/// `name` quoted for the shell's own word splitting when it needs it.
fn shell_quoted(name: &str) -> String {
    if name
        .chars()
        .any(|c| c.is_whitespace() || "'\"\\".contains(c))
    {
        shlex::try_quote(name).map_or_else(|_| name.to_owned(), |quoted| quoted.into_owned())
    } else {
        name.to_owned()
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// Where command lines come from.
pub(super) enum Input {
    Terminal {
        editor: Box<Editor<ShellHelper, DefaultHistory>>,
        history: Option<PathBuf>,
        /// Further lines of a paste, run one by one.
        queued: VecDeque<String>,
    },
    Piped(std::io::StdinLock<'static>),
}

impl Input {
    /// Line editing on a terminal (history from `$XDG_STATE_HOME/ftc/history`), else piped.
    pub(super) fn open(remote: RemoteNames) -> Self {
        if std::io::stdin().is_terminal() {
            let config = rustyline::Config::builder()
                .max_history_size(HISTORY_LINES)
                .map(|builder| builder.auto_add_history(false).build());
            if let Ok(Ok(mut editor)) = config.map(Editor::with_config) {
                editor.set_helper(Some(ShellHelper {
                    files: FilenameCompleter::new(),
                    remote,
                }));
                let history = history_path();
                if let Some(path) = &history {
                    let _ = editor.load_history(path);
                }
                return Input::Terminal {
                    editor: Box::new(editor),
                    history,
                    queued: VecDeque::new(),
                };
            }
        }
        Input::Piped(std::io::stdin().lock())
    }

    /// The next line, or `None` at the end of input.
    pub(super) fn next_line(&mut self, prompt: &str) -> Option<String> {
        match self {
            Input::Terminal {
                editor,
                history,
                queued,
            } => {
                if let Some(line) = queued.pop_front() {
                    return Some(line);
                }
                loop {
                    match tokio::task::block_in_place(|| editor.readline(prompt)) {
                        Ok(text) => {
                            let mut lines = text.lines().map(str::to_owned);
                            let first = lines.next().unwrap_or_default();
                            queued.extend(lines);
                            let _ = editor.add_history_entry(text.as_str());
                            if let Some(path) = history {
                                if let Some(folder) = path.parent() {
                                    let _ = std::fs::create_dir_all(folder);
                                }
                                let _ = editor.save_history(path);
                            }
                            return Some(first);
                        }
                        // Ctrl-C abandons the line, not the session.
                        Err(ReadlineError::Interrupted) => continue,
                        Err(_) => return None,
                    }
                }
            }
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

/// `$XDG_STATE_HOME/ftc/history`, else `~/.local/state/ftc/history`.
fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(base.join("ftc").join("history"))
}
