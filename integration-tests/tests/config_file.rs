//! `fts --config FILE` and `--print-config` as an operator meets them: the real binary, its
//! messages and exit codes, and a server started from nothing but the file.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use integration_tests::{bin, fts, Workspace};

/// The example installed as /etc/ft/fts.toml.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/fts.toml");

/// Writes `text` as `fts.toml` in the workspace and returns its path.
fn config(ws: &Workspace, text: &str) -> String {
    let path = ws.root.path().join("fts.toml");
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn an_unknown_key_is_refused_with_its_file_and_line() {
    let ws = Workspace::new();
    let path = config(&ws, "dir = \"store\"\n# a comment\nmax-conections = 8\n");
    let output = fts(ws.root.path(), &["--config", &path]);
    output.expect_code(2);
    assert!(
        output
            .stderr
            .contains(&format!("{path}:3: unknown key 'max-conections'")),
        "{output}"
    );
    assert!(!ws.root.path().join("store").exists(), "nothing may start");
}

#[test]
fn a_bad_value_is_refused_with_its_file_line_and_key() {
    let ws = Workspace::new();
    let path = config(&ws, "dir = \"store\"\nmax-connections = 0\n");
    let output = fts(ws.root.path(), &["--config", &path]);
    output.expect_code(2);
    assert!(
        output.stderr.contains(&format!(
            "{path}:2: key 'max-connections': invalid value '0'"
        )),
        "{output}"
    );
}

#[test]
fn flags_override_the_file_and_print_config_shows_the_result() {
    let ws = Workspace::new();
    let path = config(
        &ws,
        "dir = \"/srv/ft\"\nmax-connections = 8\nidle-timeout = \"1m\"\n",
    );
    let output = fts(
        ws.root.path(),
        &[
            "--config",
            &path,
            "--max-connections",
            "9",
            "--print-config",
        ],
    );
    output.success();
    let printed: toml::Table = toml::from_str(&output.stdout).unwrap();
    assert_eq!(printed["max-connections"].as_integer(), Some(9), "{output}");
    assert_eq!(printed["idle-timeout"].as_str(), Some("1m"), "{output}");
    assert_eq!(printed["dir"].as_str(), Some("/srv/ft"), "{output}");
}

#[test]
fn the_example_prints_as_the_defaults() {
    let ws = Workspace::new();
    let from_example = fts(ws.root.path(), &["--config", EXAMPLE, "--print-config"]);
    from_example.success();
    let defaults = fts(ws.root.path(), &["--dir", "/var/lib/ft", "--print-config"]);
    defaults.success();
    assert_eq!(from_example.stdout, defaults.stdout);
}

#[test]
fn a_server_runs_from_the_file_alone() {
    let ws = Workspace::new();
    let path = config(&ws, "dir = \"store\"\nlisten = \"127.0.0.1:0\"\n");
    let mut child = Command::new(bin("fts"))
        .args(["--config", &path])
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first:?}");
    // `dir` is relative to the file, not to the working directory (here /).
    assert!(Path::new(&ws.root.path().join("store/.fts")).is_dir());
}
