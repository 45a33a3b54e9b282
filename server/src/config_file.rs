//! `fts --config FILE`: a TOML file whose keys are `fts`'s long flags, read as if its settings
//! came first on the command line; and `fts --print-config`, which writes the effective
//! settings back in that format.
//!
//! The file never gets validators of its own: each `key = value` becomes `--key=value` and
//! goes through clap like a flag, so the two cannot drift apart, and a flag added to
//! [`Args`] is a valid key at once.

use std::{
    ffi::{OsStr, OsString},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use clap::{
    builder::ValueParser, error::ErrorKind, Arg, ArgAction, ArgMatches, CommandFactory,
    FromArgMatches,
};
use toml::de::{DeTable, DeValue};

use ft_server::config::Args;

/// Long flags that are no settings: they act on this invocation only.
const NOT_SETTINGS: [&str; 5] = ["config", "print-config", "man", "help", "version"];

/// Comments in `--print-config` output wrap before this column.
const COMMENT_WIDTH: usize = 90;

/// Why the command line and configuration file could not be turned into [`Args`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// A key that is no long flag of `fts`.
    #[error(
        "{path}:{line}: unknown key '{key}' (the keys are the long flags of `fts --help`, \
         without the dashes)"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value its flag does not accept.
    #[error("{path}:{line}: key '{key}': {message}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The command line (with the file's settings in front) is not valid, or asks for help:
    /// clap prints it and picks the exit code.
    #[error(transparent)]
    Usage(#[from] clap::Error),
}

/// The parsed flags, and the matches they came from (for [`Loaded::to_toml`]).
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The effective flags: the file's settings, overridden by the command line's.
    pub(crate) args: Args,
    matches: ArgMatches,
}

/// Parses `argv` (program name first), reading the file named by `--config` if any. The
/// file's settings go in front of the command line's, and the command is told to let a later
/// occurrence of a flag replace an earlier one, so the command line wins.
pub(crate) fn load<I, T>(argv: I) -> Result<Loaded, ConfigFileError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut combined = Vec::with_capacity(argv.len());
    combined.extend(argv.first().cloned());
    if let Some(path) = config_path(&argv) {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
            path: path.clone(),
            source,
        })?;
        combined.extend(file_args(&path, &text)?);
    }
    combined.extend(argv.iter().skip(1).cloned());
    let matches = command().try_get_matches_from(combined)?;
    let args = Args::from_arg_matches(&matches)?;
    Ok(Loaded { args, matches })
}

/// `fts`'s command as the file sees it: later flags replace earlier ones.
fn command() -> clap::Command {
    Args::command().args_override_self(true)
}

/// The `--config` value, found by a lenient first parse (one that does not stop at a missing
/// `--dir` or a bad value: the real parse reports those).
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    command()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .ok()?
        .get_one::<PathBuf>("config")
        .cloned()
}

/// The arguments that are settings, i.e. may be keys of the file.
fn settings(command: &clap::Command) -> impl Iterator<Item = (&str, &Arg)> {
    command.get_arguments().filter_map(|arg| {
        let long = arg.get_long()?;
        (!arg.is_positional() && !NOT_SETTINGS.contains(&long)).then_some((long, arg))
    })
}

/// Turns the file into `--key=value` arguments, checking each value with its flag's own
/// parser so that an error can name its line.
fn file_args(path: &Path, text: &str) -> Result<Vec<OsString>, ConfigFileError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table = DeTable::parse(text).map_err(|err| ConfigFileError::Syntax {
        path: path.to_owned(),
        line: line_of(err.span().map_or(0, |span| span.start)),
        message: err.message().trim().to_owned(),
    })?;
    let command = command();
    let base = path.parent().unwrap_or(Path::new(""));
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut args = Vec::new();
    for (key, value) in entries {
        let key_line = line_of(key.span().start);
        let Some((long, arg)) =
            settings(&command).find(|(long, _)| *long == key.get_ref().as_ref())
        else {
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                line: key_line,
                key: key.get_ref().to_string(),
            });
        };
        let bad_value = |message: String| ConfigFileError::BadValue {
            path: path.to_owned(),
            line: line_of(value.span().start),
            key: long.to_owned(),
            message,
        };
        let values = setting_values(arg, value.get_ref()).map_err(bad_value)?;
        let flags: Vec<OsString> = match values {
            Setting::Flag(on) => on.then(|| format!("--{long}").into()).into_iter().collect(),
            Setting::Values(values) => values
                .into_iter()
                .map(|value| {
                    let value = resolve_path(arg.get_value_parser(), base, value);
                    let mut flag = OsString::from(format!("--{long}="));
                    flag.push(value);
                    flag
                })
                .collect(),
        };
        check(&command, &flags).map_err(bad_value)?;
        args.extend(flags);
    }
    Ok(args)
}

/// What one key of the file sets.
enum Setting {
    /// A flag without a value, on or off.
    Flag(bool),
    /// The values of a flag that takes them.
    Values(Vec<String>),
}

/// A TOML value as the flag's setting: a boolean for a flag, otherwise a string, number or
/// boolean (the flag's parser decides), or an array of them for a flag that may repeat.
fn setting_values(arg: &Arg, value: &DeValue<'_>) -> Result<Setting, String> {
    match arg.get_action() {
        ArgAction::SetTrue => value
            .as_bool()
            .map(Setting::Flag)
            .ok_or_else(|| format!("expected true or false, found {}", value.type_str())),
        ArgAction::Set => scalar(value).map(|text| Setting::Values(vec![text])),
        ArgAction::Append => match value.as_array() {
            Some(items) => items
                .iter()
                .map(|item| scalar(item.get_ref()))
                .collect::<Result<_, _>>()
                .map(Setting::Values),
            None => scalar(value).map(|text| Setting::Values(vec![text])),
        },
        _ => Err("this flag cannot be set in a configuration file".to_owned()),
    }
}

/// A string, integer, float or boolean as the text a flag would be given.
fn scalar(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(text) => Ok(text.to_string()),
        // Already without `_` and radix prefix: `from_str_radix`'s form.
        DeValue::Integer(integer) => i128::from_str_radix(integer.as_str(), integer.radix())
            .map(|number| number.to_string())
            .map_err(|err| format!("integer out of range: {err}")),
        DeValue::Float(float) => Ok(float.as_str().to_owned()),
        DeValue::Boolean(on) => Ok(on.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, found {}",
            other.type_str()
        )),
    }
}

/// A relative path in the file is relative to the file's folder, not to wherever `fts`
/// happens to be started.
fn resolve_path(parser: &ValueParser, base: &Path, value: String) -> OsString {
    if parser.type_id() == clap::builder::ValueParser::path_buf().type_id()
        && Path::new(&value).is_relative()
        && !value.is_empty()
    {
        base.join(value).into_os_string()
    } else {
        value.into()
    }
}

/// Runs one key's flags through clap alone: a value error is the key's; anything about
/// other flags (a missing `--dir`, `--cert` without `--key`) waits for the whole parse.
fn check(command: &clap::Command, flags: &[OsString]) -> Result<(), String> {
    let argv = std::iter::once(OsStr::new("fts")).chain(flags.iter().map(OsString::as_os_str));
    match command.clone().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(err) => match err.kind() {
            ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict => Ok(()),
            _ => {
                let rendered = err.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                Err(first.trim_start_matches("error: ").to_owned())
            }
        },
    }
}

impl Loaded {
    /// The effective settings as a configuration file that [`load`] reads back: every
    /// setting with its one-line help as a comment, unset ones commented out.
    pub(crate) fn to_toml(&self) -> String {
        let command = command();
        let mut out = String::from(
            "# fts configuration (`fts --config FILE`). Keys are the long flags of `fts --help`;\n\
             # flags given on the command line override them.\n",
        );
        for (long, arg) in settings(&command) {
            out.push('\n');
            if let Some(help) = arg.get_help() {
                for line in wrap(&help.to_string(), COMMENT_WIDTH - 2) {
                    let _ = writeln!(out, "# {line}");
                }
            }
            let id = arg.get_id().as_str();
            let _ = match arg.get_action() {
                ArgAction::SetTrue => writeln!(out, "{long} = {}", self.matches.get_flag(id)),
                _ => match self.matches.get_raw(id) {
                    Some(values) => {
                        let values: Vec<String> = values
                            .map(|value| toml_value(arg.get_value_parser(), value))
                            .collect();
                        match arg.get_action() {
                            ArgAction::Append => {
                                writeln!(out, "{long} = [{}]", values.join(", "))
                            }
                            _ => writeln!(out, "{long} = {}", values.join(" ")),
                        }
                    }
                    None => writeln!(out, "# {long}: not set"),
                },
            };
        }
        out
    }
}

/// One flag value as TOML: integers bare, everything else a string; paths made absolute so
/// that the file means the same wherever it is put.
fn toml_value(parser: &ValueParser, value: &OsStr) -> String {
    let text = value.to_string_lossy();
    if parser.type_id() == ValueParser::path_buf().type_id() {
        let path = std::path::absolute(Path::new(value)).unwrap_or_else(|_| value.into());
        return toml::Value::String(path.to_string_lossy().into_owned()).to_string();
    }
    match text.parse::<i64>() {
        Ok(number) if number.to_string() == text => number.to_string(),
        _ => toml::Value::String(text.into_owned()).to_string(),
    }
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Whether a flag's value is optional with no default (such keys appear commented out).
#[cfg(test)]
fn has_no_default(arg: &Arg) -> bool {
    !matches!(arg.get_action(), ArgAction::SetTrue) && arg.get_default_values().is_empty()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The example shipped as /etc/ft/fts.toml.
    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/fts.toml");

    /// A configuration file in a fresh temporary folder.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fts.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn load_file(path: &Path, flags: &[&str]) -> Result<Loaded, ConfigFileError> {
        let config = ["fts", "--config", path.to_str().unwrap()];
        load(config.iter().chain(flags))
    }

    /// `Args` compared by value (it has no `PartialEq`), without the `--config` it came from.
    fn debug(mut args: Args) -> String {
        args.config = None;
        format!("{args:?}")
    }

    #[test]
    fn the_example_has_every_setting() {
        let text = std::fs::read_to_string(EXAMPLE).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let command = command();
        for (long, arg) in settings(&command) {
            // A setting that is off by default is shown commented out, with a sample value.
            let commented = text.lines().any(|line| {
                let line = line.trim_start_matches('#').trim_start();
                line.strip_prefix(long)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            assert!(
                table.contains_key(long) || (has_no_default(arg) && commented),
                "{EXAMPLE} lacks `{long} = ...` (commented out only if it has no default)"
            );
        }
        assert!(settings(&command).any(|(long, _)| long == "public-host"));
        assert!(!settings(&command).any(|(long, _)| NOT_SETTINGS.contains(&long)));
    }

    #[test]
    fn the_example_holds_the_defaults() {
        let example = load_file(Path::new(EXAMPLE), &[]).unwrap();
        assert_eq!(example.args.dir.as_deref(), Some(Path::new("/var/lib/ft")));
        let defaults = load(["fts", "--dir", "/var/lib/ft"]).unwrap();
        assert_eq!(debug(example.args), debug(defaults.args));
    }

    #[test]
    fn printed_configuration_reads_back_the_same() {
        let loaded = load([
            "fts",
            "--dir",
            "/srv/store",
            "--max-file-size",
            "3G",
            "--anonymous",
            "read",
            "--public-host",
            "files.example.org",
        ])
        .unwrap();
        let (_dir, path) = file(&loaded.to_toml());
        let again = load_file(&path, &[]).unwrap();
        assert_eq!(debug(again.args), debug(loaded.args));
    }

    #[test]
    fn flags_override_the_file() {
        let (_dir, path) = file("dir = \"/srv/a\"\nmax-connections = 8\nidle-timeout = \"1m\"\n");
        let loaded = load_file(&path, &["--max-connections", "9", "--dir", "/srv/b"]).unwrap();
        assert_eq!(loaded.args.max_connections, 9);
        assert_eq!(loaded.args.dir.as_deref(), Some(Path::new("/srv/b")));
        assert_eq!(loaded.args.idle_timeout, std::time::Duration::from_secs(60));
        // Flags may also come before --config.
        let loaded = load([
            "fts",
            "--max-connections",
            "7",
            "--config",
            path.to_str().unwrap(),
        ]);
        assert_eq!(loaded.unwrap().args.max_connections, 7);
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let (_dir, path) = file("dir = \"x\"\n\nmax-conections = 8\n");
        let err = load_file(&path, &[]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:3: ", path.display())), "{err}");
        assert!(err.contains("unknown key 'max-conections'"), "{err}");

        let (_dir, path) = file("dir = \"x\"\nmax-file-size = \"12Q\"\n");
        let err = load_file(&path, &[]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:2: ", path.display())), "{err}");
        assert!(err.contains("key 'max-file-size'"), "{err}");
        assert!(err.contains("unknown size suffix"), "{err}");

        let (_dir, path) = file("dir = \"x\"\nanonymous = \"admin\"\n");
        let err = load_file(&path, &[]).unwrap_err().to_string();
        assert!(err.contains(":2: key 'anonymous'"), "{err}");

        let (_dir, path) = file("dir = \"x\"\nlisten = [1, 2]\n");
        let err = load_file(&path, &[]).unwrap_err().to_string();
        assert!(err.contains(":2: key 'listen': expected a string"), "{err}");

        let (_dir, path) = file("dir = \"x\"\nconfig = \"other.toml\"\n");
        let err = load_file(&path, &[]).unwrap_err().to_string();
        assert!(err.contains(":2: unknown key 'config'"), "{err}");

        let (_dir, path) = file("dir = \"x\"\nlisten = \n");
        let err = load_file(&path, &[]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:2: ", path.display())), "{err}");
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let (dir, path) = file("dir = \"store\"\ncert = \"/etc/c.pem\"\nkey = \"k.pem\"\n");
        let loaded = load_file(&path, &[]).unwrap();
        assert_eq!(loaded.args.dir, Some(dir.path().join("store")));
        assert_eq!(loaded.args.cert.as_deref(), Some(Path::new("/etc/c.pem")));
        assert_eq!(loaded.args.key, Some(dir.path().join("k.pem")));
    }

    #[test]
    fn integers_in_any_toml_form_reach_the_flag() {
        let (_dir, path) = file("dir = \"x\"\nmax-connections = 0x40\nmax-memory = 1_048_576\n");
        let loaded = load_file(&path, &[]).unwrap();
        assert_eq!(loaded.args.max_connections, 64);
        assert_eq!(loaded.args.max_memory, 1 << 20);
    }
}
