//! Where the server and defaults come from: an explicit argument, then `FTC_SERVER`, then
//! the config file (`$XDG_CONFIG_HOME/ftc/config.toml`, else `~/.config/ftc/config.toml`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ft_client::{KnownServers, ServerAddress};
use ft_protocol::Fingerprint;
use serde::Deserialize;

/// Environment variable naming the default server.
const SERVER_ENV: &str = "FTC_SERVER";

/// Defaults gathered from the environment and the config file.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// The configured server and where it came from (for messages).
    server: Option<ServerAddress>,
    /// Default for `--retries`.
    pub(crate) retries: Option<u32>,
    /// Default folder for `get`.
    pub(crate) output: Option<PathBuf>,
    /// False to never draw progress bars.
    pub(crate) progress: Option<bool>,
    /// Default for `send --compress`.
    pub(crate) compress: Option<bool>,
    /// The server named in the config file (its `fingerprint` is pinned for it alone).
    pub(crate) file_server: Option<ServerAddress>,
    /// The user to log in as (`ftc login` writes it).
    pub(crate) user: Option<String>,
    /// The user's token (`ftc login` writes it; the file is then readable by its owner only).
    pub(crate) token: Option<String>,
    /// The certificate fingerprint of the configured server.
    pub(crate) fingerprint: Option<Fingerprint>,
}

/// The config file's schema. Unknown keys are errors, so a typo is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default, deserialize_with = "server_from_text")]
    server: Option<ServerAddress>,
    retries: Option<u32>,
    output: Option<PathBuf>,
    progress: Option<bool>,
    compress: Option<bool>,
    user: Option<String>,
    token: Option<String>,
    #[serde(default, deserialize_with = "fingerprint_from_text")]
    fingerprint: Option<Fingerprint>,
}

fn fingerprint_from_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Fingerprint>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

fn server_from_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ServerAddress>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// The config file's path, whether or not it exists.
pub(crate) fn config_path() -> Option<PathBuf> {
    ft_client::config_files::config_path()
}

/// The known servers file (fingerprints trusted on first use).
pub(crate) fn known_servers() -> Option<KnownServers> {
    ft_client::config_files::known_servers()
}

/// Stores what `ftc login` learnt in the config file (see
/// [`ft_client::config_files::save_login`]).
pub(crate) fn save_login(
    server: &ServerAddress,
    user: &str,
    token: &str,
    fingerprint: Fingerprint,
) -> anyhow::Result<PathBuf> {
    Ok(ft_client::config_files::save_login(
        server,
        user,
        token,
        fingerprint,
    )?)
}

/// Reads the config file (if present) and the environment. A malformed file or variable is
/// an error naming the file and line, or the variable.
pub(crate) fn load() -> anyhow::Result<Settings> {
    let mut settings = Settings::default();
    if let Some(path) = config_path() {
        let context = || format!("config file {}", path.display());
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file: FileConfig = toml::from_str(&text).with_context(context)?;
                settings = Settings {
                    file_server: file.server.clone(),
                    server: file.server,
                    retries: file.retries,
                    output: file.output,
                    progress: file.progress,
                    compress: file.compress,
                    user: file.user,
                    token: file.token,
                    fingerprint: file.fingerprint,
                };
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(context),
        }
    }
    if let Some(value) = std::env::var_os(SERVER_ENV).filter(|value| !value.is_empty()) {
        let text = value.to_string_lossy();
        let server = text.parse::<ServerAddress>().context(SERVER_ENV)?;
        settings.server = Some(server);
    }
    Ok(settings)
}

/// What follows the optional server among a command's positional arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operands {
    /// Local paths (`send`): an existing path is never taken for a server.
    Paths,
    /// Stored names or a pattern.
    Names,
    /// Nothing (`info`, `shell`): a positional argument can only be the server.
    Nothing,
}

/// Picks the server and returns it with the remaining operands.
///
/// `--server` wins. Otherwise, with a configured server, the first argument is taken as the
/// server only if it is explicit: it has a `:PORT` (or is a bracketed IPv6 address) and is
/// not an existing local path. Without a configured server the first argument must be the
/// server.
pub(crate) fn resolve(
    settings: &Settings,
    flag: Option<ServerAddress>,
    mut args: Vec<String>,
    operands: Operands,
) -> anyhow::Result<(ServerAddress, Vec<String>)> {
    if let Some(server) = flag {
        return Ok((server, args));
    }
    let first_is_path = args
        .first()
        .is_some_and(|first| operands == Operands::Paths && Path::new(first).exists());
    let explicit = args.first().is_some_and(|first| {
        let looks_like_address = first.contains(':') || first.starts_with('[');
        (operands == Operands::Nothing || looks_like_address) && !first_is_path
    });
    let no_server = || {
        anyhow::anyhow!(
            "no server given: pass HOST:PORT, set {SERVER_ENV}, or put server = \"host:port\" in {}",
            config_path().map_or_else(|| "the config file".to_owned(), |p| p.display().to_string())
        )
    };
    match (&settings.server, explicit) {
        (Some(server), false) => Ok((server.clone(), args)),
        // `ftc send note.txt part1.bin` without a server: the file is not a host name.
        (None, _) if first_is_path => Err(no_server()),
        (_, _) if !args.is_empty() => {
            let first = args.remove(0);
            let server = first.parse::<ServerAddress>()?;
            Ok((server, args))
        }
        (None, _) => Err(no_server()),
        (Some(server), true) => Ok((server.clone(), args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Settings {
        Settings {
            server: Some("configured:1".parse().unwrap()),
            ..Settings::default()
        }
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_explicit_address_wins_over_the_configured_one() {
        let (server, rest) = resolve(
            &configured(),
            None,
            args(&["other:2", "n"]),
            Operands::Names,
        )
        .unwrap();
        assert_eq!(server.to_string(), "other:2");
        assert_eq!(rest, ["n"]);
        let flag = Some("flag:3".parse().unwrap());
        let (server, rest) = resolve(&configured(), flag, args(&["x:9"]), Operands::Names).unwrap();
        assert_eq!(server.to_string(), "flag:3");
        assert_eq!(rest, ["x:9"]);
    }

    #[test]
    fn without_a_port_the_first_argument_is_an_operand_when_configured() {
        let (server, rest) =
            resolve(&configured(), None, args(&["report.pdf"]), Operands::Names).unwrap();
        assert_eq!(server.to_string(), "configured:1");
        assert_eq!(rest, ["report.pdf"]);
        let (server, _) = resolve(
            &Settings::default(),
            None,
            args(&["host", "n"]),
            Operands::Names,
        )
        .unwrap();
        assert_eq!(server.to_string(), "host:7878");
        let (server, rest) =
            resolve(&configured(), None, args(&["host"]), Operands::Nothing).unwrap();
        assert_eq!(
            (server.to_string(), rest.len()),
            ("host:7878".to_owned(), 0)
        );
    }

    #[test]
    fn no_server_anywhere_is_a_clear_error() {
        let err = resolve(&Settings::default(), None, Vec::new(), Operands::Nothing).unwrap_err();
        assert!(err.to_string().contains("no server given"), "{err}");
        // A local file first, and no server configured: never looked up as a host.
        let dir = tempfile::tempdir().unwrap();
        let note = dir.path().join("note.txt");
        std::fs::write(&note, b"n").unwrap();
        let note = note.to_str().unwrap();
        let err = resolve(
            &Settings::default(),
            None,
            args(&[note, "part1.bin"]),
            Operands::Paths,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no server given"), "{err}");
    }

    #[test]
    fn malformed_config_names_the_line() {
        let err =
            toml::from_str::<FileConfig>("retries = 3\nserver = \"host:99999\"\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = toml::from_str::<FileConfig>("servr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
    }
}
