//! Where ftc keeps its files, shared by every front end (`ftc`, `ftc-gui`): the config
//! folder (`$XDG_CONFIG_HOME/ftc`, else `~/.config/ftc`), the known servers file in it, and
//! saving a login into the config file.

use std::path::{Path, PathBuf};

use ft_protocol::Fingerprint;

use crate::{KnownServers, ServerAddress};

/// ftc's folder of configuration, whether or not it exists.
pub fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("ftc"))
}

/// The config file's path, whether or not it exists.
pub fn config_path() -> Option<PathBuf> {
    Some(config_dir()?.join("config.toml"))
}

/// The known servers file (fingerprints trusted on first use).
pub fn known_servers() -> Option<KnownServers> {
    Some(KnownServers::at(config_dir()?.join("known_servers")))
}

/// Why a login could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveLoginError {
    /// No HOME and no XDG_CONFIG_HOME.
    #[error("cannot tell where the config file goes (no HOME)")]
    NoConfigDir,
    /// Reading, parsing or writing the file failed.
    #[error("config file {path}: {message}")]
    File {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Stores a login (server, user, token, fingerprint) in the config file, keeping its other
/// settings; the file is readable by its owner only, since it holds a token, and is
/// replaced atomically. Returns the file's path.
pub fn save_login(
    server: &ServerAddress,
    user: &str,
    token: &str,
    fingerprint: Fingerprint,
) -> Result<PathBuf, SaveLoginError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let path = config_path().ok_or(SaveLoginError::NoConfigDir)?;
    let failed = |message: String| SaveLoginError::File {
        path: path.clone(),
        message,
    };
    let mut table: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|err| failed(err.to_string()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(err) => return Err(failed(err.to_string())),
    };
    table.insert("server".into(), server.to_string().into());
    table.insert("user".into(), user.into());
    table.insert("token".into(), token.into());
    table.insert("fingerprint".into(), fingerprint.to_string().into());
    let text = toml::to_string(&table).map_err(|err| failed(err.to_string()))?;
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(|err| failed(err.to_string()))?;
    }
    let temporary = path.with_extension("toml.new");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, &path));
    written.map_err(|err| failed(err.to_string()))?;
    Ok(path)
}
