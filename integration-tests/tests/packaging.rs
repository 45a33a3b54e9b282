//! The Debian packaging, checked without building a package, root or network: the systemd
//! unit keeps its confinement and runs `fts` with the configuration the package installs;
//! the packages' assets and changelog agree with the workspace; the container recipe runs
//! `fts` unprivileged on a volume with a graceful stop. With `systemd-analyze` present, the
//! unit is also verified and its exposure score bounded.

use std::{collections::BTreeMap, fs, path::Path, process::Command, time::Duration};

use integration_tests::{bin, ftc, fts};

/// The workspace root.
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(relative: &str) -> String {
    fs::read_to_string(root().join(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

/// The unit's `[Service]` settings: key -> every value given (a directive may repeat).
fn service_settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.is_empty() && !line.starts_with(['#', ';']) {
            let (key, value) = line.split_once('=').expect("key=value");
            settings
                .entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    settings
}

/// `fts --shutdown-grace` when not set: what a supervisor must wait for after SIGTERM.
fn default_shutdown_grace() -> Duration {
    let defaults = fts(root(), &["--print-config"]);
    defaults.success();
    let defaults: toml::Table = toml::from_str(&defaults.stdout).unwrap();
    humantime::parse_duration(defaults["shutdown-grace"].as_str().unwrap()).unwrap()
}

/// The hardening every version of the unit must keep.
const REQUIRED: &[(&str, &str)] = &[
    ("ExecStart", "/usr/bin/fts --config /etc/ft/fts.toml"),
    ("StateDirectory", "ft"),
    ("DynamicUser", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateUsers", "yes"),
    ("NoNewPrivileges", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallArchitectures", "native"),
    ("CapabilityBoundingSet", ""),
    ("LimitNOFILE", "65536"),
    ("Restart", "on-failure"),
    ("KillSignal", "SIGTERM"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("UMask", "0077"),
    ("ProcSubset", "pid"),
    ("ProtectProc", "invisible"),
];

#[test]
fn the_unit_keeps_its_hardening_and_runs_the_packaged_configuration() {
    let settings = service_settings(&read("packaging/ft-server.service"));
    for (key, value) in REQUIRED {
        let values = settings.get(*key).map(Vec::as_slice).unwrap_or_default();
        assert!(
            values.iter().any(|given| given == value),
            "ft-server.service must have {key}={value} (has {values:?})"
        );
    }

    // The file the unit reads is the example, installed there as a conffile.
    let server: toml::Table = toml::from_str(&read("server/Cargo.toml")).unwrap();
    let deb = &server["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    let installs = |source: &str, dest: &str| {
        assets.iter().any(|asset| {
            let asset = asset.as_array().unwrap();
            asset[0].as_str() == Some(source) && asset[1].as_str() == Some(dest)
        })
    };
    assert!(installs("../packaging/fts.toml", "etc/ft/fts.toml"));
    assert!(installs("target/release/fts", "usr/bin/"));
    assert!(installs("../target/packaging/fts.1", "usr/share/man/man1/"));
    assert_eq!(deb["maintainer-scripts"].as_str(), Some("../packaging/"));
    let example: toml::Table = toml::from_str(&read("packaging/fts.toml")).unwrap();
    assert_eq!(
        example["dir"].as_str(),
        Some("/var/lib/ft"),
        "StateDirectory=ft"
    );

    // systemd must not kill fts before its own grace period for uploads in flight ends.
    let grace = default_shutdown_grace();
    let stop = &settings["TimeoutStopSec"][0];
    let stop = humantime::parse_duration(stop).unwrap();
    assert!(
        stop > grace,
        "TimeoutStopSec={stop:?} must exceed --shutdown-grace {grace:?}"
    );
}

#[test]
fn the_client_package_ships_its_man_page_and_completions() {
    let client: toml::Table = toml::from_str(&read("client/Cargo.toml")).unwrap();
    let assets = client["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    let destinations: Vec<&str> = assets
        .iter()
        .map(|asset| asset.as_array().unwrap()[1].as_str().unwrap())
        .collect();
    for dest in [
        "usr/bin/",
        "usr/share/man/man1/",
        "usr/share/bash-completion/completions/ftc",
        "usr/share/zsh/vendor-completions/_ftc",
        "usr/share/fish/vendor_completions.d/ftc.fish",
    ] {
        assert!(destinations.contains(&dest), "ft-client lacks {dest}");
    }
}

#[test]
fn the_changelog_names_the_workspace_version() {
    let workspace: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let version = workspace["workspace"]["package"]["version"]
        .as_str()
        .unwrap();
    let changelog = read("packaging/changelog");
    let first = changelog.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("ft ({version}-")),
        "packaging/changelog must start with an entry for {version}: {first}"
    );
}

#[test]
fn both_binaries_name_their_version_and_commit() {
    let workspace: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let version = workspace["workspace"]["package"]["version"]
        .as_str()
        .unwrap();
    for (name, output) in [
        ("fts", fts(root(), &["--version"])),
        ("ftc", ftc(root(), &["--version"])),
    ] {
        output.success();
        // `NAME VERSION (COMMIT)`: the commit's first 12 hex digits, or "unknown" for a
        // build outside a git checkout.
        let line = output.stdout.trim();
        let commit = line
            .strip_prefix(&format!("{name} {version} ("))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{name} --version: {line}"));
        assert!(
            commit == "unknown"
                || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
            "{name} --version names no commit: {line}"
        );
    }
}

#[test]
fn systemd_accepts_the_unit_and_rates_it_well_confined() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: unit not verified (its directives were checked)");
        return;
    }
    // The unit as installed, but running the binary under test (verify checks it exists).
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("ft-server.service");
    let text = read("packaging/ft-server.service").replace(
        "ExecStart=/usr/bin/fts",
        &format!("ExecStart={}", bin("fts").display()),
    );
    fs::write(&unit, text).unwrap();

    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&security.stdout);
    let score: f64 = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for ft-server.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in: {stdout}"));
    assert!(score <= 2.0, "exposure {score} above 2.0:\n{stdout}");
}

/// The Dockerfile's instructions (continuation lines joined, comments dropped), each as its
/// upper-cased keyword and the rest of the line.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (current.is_empty() && line.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (keyword, rest) = current.split_once(char::is_whitespace).expect("keyword");
                instructions.push((keyword.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

#[test]
fn the_container_runs_fts_unprivileged_on_a_volume_and_stops_gracefully() {
    let instructions = dockerfile_instructions(&read("packaging/Dockerfile"));
    let stages: Vec<&str> = instructions
        .iter()
        .filter(|(keyword, _)| keyword == "FROM")
        .map(|(_, image)| image.as_str())
        .collect();
    assert!(
        stages.len() == 2 && stages[0].starts_with("rust:") && stages[0].contains("-bookworm"),
        "a builder on the Rust image for Debian 12, then the runtime: {stages:?}"
    );
    assert_eq!(stages[1], "debian:bookworm-slim");

    // What the runtime stage says, after its FROM.
    let last_from = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .unwrap();
    let runtime = &instructions[last_from..];
    let given = |key: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(keyword, _)| keyword == key)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    let user = given("USER");
    assert_eq!(user.len(), 1, "one USER: {user:?}");
    let name = user[0].split(':').next().unwrap();
    assert!(!["root", "0"].contains(&name), "runs as root: {user:?}");
    assert_eq!(given("VOLUME"), ["/data"]);
    assert_eq!(given("EXPOSE"), ["7878"]);
    assert_eq!(given("STOPSIGNAL"), ["SIGTERM"]);
    let health = given("HEALTHCHECK");
    assert!(
        health.len() == 1 && health[0].contains("CMD") && health[0].contains("7878"),
        "HEALTHCHECK on port 7878: {health:?}"
    );
    assert_eq!(
        given("CMD"),
        [r#"["fts", "--dir", "/data", "--listen", "0.0.0.0:7878"]"#]
    );

    // The Compose example builds that recipe, keeps /data, publishes the port, restarts,
    // and waits past fts's grace period before it kills.
    let compose = read("packaging/compose.yaml");
    for expected in [
        "dockerfile: packaging/Dockerfile",
        ":/data",
        "\"7878:7878\"",
        "restart: unless-stopped",
        "stop_signal: SIGTERM",
    ] {
        assert!(compose.contains(expected), "compose.yaml lacks {expected}");
    }
    let stop = compose
        .lines()
        .find_map(|line| line.trim().strip_prefix("stop_grace_period:"))
        .expect("compose.yaml sets stop_grace_period");
    let stop = humantime::parse_duration(stop.trim()).unwrap();
    let grace = default_shutdown_grace();
    assert!(
        stop > grace,
        "stop_grace_period {stop:?} must exceed --shutdown-grace {grace:?}"
    );

    // The build context leaves the build outputs behind.
    let ignored = read(".dockerignore");
    assert!(ignored
        .lines()
        .any(|line| line.trim_end_matches('/') == "target"));
}
