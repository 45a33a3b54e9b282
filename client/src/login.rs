//! `ftc login`: checks a server, a user and a token by logging in once, then saves them with
//! the server's fingerprint in the config file, so later commands need no flags.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context as _};
use ft_client::{Access, Client, ConnectString, ServerAddress};
use ft_protocol::Credentials;

use crate::{cli::LoginArgs, config, config::Settings, exit::Exit, output::report_error};

/// Runs `ftc login` and returns its exit status.
pub(crate) async fn login(args: LoginArgs, settings: &Settings) -> Exit {
    let (server, access) = match target(args, settings) {
        Ok(target) => target,
        Err(err) => return report_error(err, false),
    };
    let Some(credentials) = access.credentials.clone() else {
        return report_error(anyhow::anyhow!("no credentials to log in with"), false);
    };
    let client = match Client::connect(&server, &access).await {
        Ok(client) => client,
        Err(err) => return report_error(err, false),
    };
    let role = client.authenticated().role;
    let saved = config::save_login(
        &server,
        &credentials.user,
        &credentials.token,
        client.fingerprint(),
    );
    match saved {
        Ok(path) => {
            println!(
                "logged in to {server} as {} (role {role}); saved in {}",
                credentials.user,
                path.display()
            );
            Exit::Success
        }
        Err(err) => report_error(err, false),
    }
}

/// The server and how to log in, from a connect string or from HOST:PORT, --user and a
/// token read from stdin.
fn target(args: LoginArgs, settings: &Settings) -> anyhow::Result<(ServerAddress, Access)> {
    if ConnectString::looks_like(&args.target) {
        let parsed: ConnectString = args.target.parse()?;
        let access = Access {
            credentials: Some(parsed.credentials),
            pinned: Some(parsed.fingerprint),
            known_servers: config::known_servers(),
            on_first_use: None,
            connect_timeout: None,
        };
        return Ok((parsed.server, access));
    }
    let server: ServerAddress = args.target.parse()?;
    let Some(user) = args.user.or_else(|| settings.user.clone()) else {
        bail!("which user? pass --user NAME (or paste a connect string)");
    };
    let token = read_token()?;
    let access = Access {
        credentials: Some(Credentials { user, token }),
        pinned: args.fingerprint,
        known_servers: config::known_servers(),
        on_first_use: Some(crate::first_use_notice()),
        connect_timeout: None,
    };
    Ok((server, access))
}

/// The token: asked for without echo on a terminal, else the first line of stdin.
fn read_token() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let token = if stdin.is_terminal() {
        eprint!("token: ");
        let _ = std::io::stderr().flush();
        read_without_echo(&stdin)?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the token from stdin")?;
        line
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("no token given");
    }
    Ok(token)
}

/// One line from the terminal with echo off (restored afterwards, even on error).
fn read_without_echo(stdin: &std::io::Stdin) -> anyhow::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let original = tcgetattr(stdin).context("cannot read the terminal's settings")?;
    let mut quiet = original.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(stdin, OptionalActions::Now, &quiet).context("cannot turn off echo")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(stdin, OptionalActions::Now, &original);
    eprintln!();
    read.context("cannot read the token")?;
    Ok(line)
}
