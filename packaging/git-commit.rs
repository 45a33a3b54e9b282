//! The build script of `fts` and `ftc` (both manifests point here): stamps `--version` with
//! the git commit the binary is built from (`FT_GIT_COMMIT`), or "unknown" outside a git
//! checkout (a source tarball) or without git.

use std::{path::Path, process::Command};

/// `git ARGS` run in this package's folder: its output, trimmed, if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    output.status.success().then(|| text.trim().to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .filter(|hash| hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FT_GIT_COMMIT={commit}");

    // Run again when HEAD moves: HEAD names the branch, the branch's file (or packed-refs)
    // the commit. A watched file that is missing would make every build run this again.
    println!("cargo:rerun-if-changed=../packaging/git-commit.rs");
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
