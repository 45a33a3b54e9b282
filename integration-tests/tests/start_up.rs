//! What the binaries set up about their own process as they start: on an AMD processor,
//! glibc's copies by its vector loop (`GLIBC_TUNABLES`, see the `ft-tuning` crate), set by
//! starting again once; a user's own tunables are left as they are.

use std::{
    fs,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use integration_tests::{bin, relay, Workspace};

const VECTOR_COPIES: &str = "GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4294967296";

fn amd_processor() -> bool {
    fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .find(|line| line.starts_with("vendor_id"))
            .is_some_and(|line| line.contains("AuthenticAMD") || line.contains("HygonGenuine"))
    })
}

/// The environment of a running process, one `NAME=value` per entry.
fn environment(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

fn tunables(pid: u32) -> Vec<String> {
    environment(pid)
        .into_iter()
        .filter(|entry| entry.starts_with("GLIBC_TUNABLES="))
        .collect()
}

#[test]
fn server_and_client_run_with_vector_copies_on_amd_and_keep_their_names() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        eprintln!("skipped: the tests run with GLIBC_TUNABLES already set");
        return;
    }
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let expected: Vec<String> = if amd_processor() {
        vec![VECTOR_COPIES.to_owned()]
    } else {
        Vec::new()
    };
    // The server answered (it printed its address), so it runs as it will run.
    assert_eq!(tunables(server.pid()), expected, "fts");
    let comm = fs::read_to_string(format!("/proc/{}/comm", server.pid())).unwrap();
    assert_eq!(comm.trim(), "fts");

    let bob = relay::add_user(&ws, "bob");
    let out = relay::out_dir(&ws, "bob");
    let mut listener = relay::listen(&ws, &server, ("bob", &bob), &out, &[]);
    let pid = listener.child.id();
    assert_eq!(tunables(pid), expected, "ftc");
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "ftc");
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.split(|byte| *byte == 0).any(|arg| arg == b"listen"),
        "ftc's arguments survive the restart"
    );
    let _ = listener.child.kill();
    let _ = listener.child.wait();
}

#[test]
fn tunables_the_user_set_are_left_as_they_are() {
    let ws = Workspace::new();
    let own = "glibc.malloc.perturb=0";
    let mut child = Command::new(bin("fts"))
        .arg("--dir")
        .arg(ws.store_dir())
        .args(["--listen", "127.0.0.1:0"])
        .env("GLIBC_TUNABLES", own)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = BufReader::new(stdout).lines().next();
    let found = tunables(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let first = first.unwrap().unwrap();
    assert!(first.starts_with("listening on"), "{first}");
    assert_eq!(found, vec![format!("GLIBC_TUNABLES={own}")]);
}
