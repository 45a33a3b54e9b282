//! What ft's binaries set up about their own process before anything else runs.
//!
//! **Fast copies on AMD processors.** glibc 2.36 (Debian 12) copies blocks of a few KiB and
//! more with `rep movsb`, which on AMD Zen processors runs at a fifteenth of its speed when
//! the destination lies 1 to 15 bytes past the source, modulo 4 KiB: 3.5 GB/s against
//! 52 GB/s for 16 KiB on the EPYC ft is measured on. TLS meets that distance on every
//! record: rustls copies each record's plaintext to 5 bytes into a fresh, page-aligned
//! buffer, and content read into a page-aligned buffer sits at 0. That one copy was a fifth
//! of the sender's CPU time and a sixth of a relaying server's (see docs/performance.md).
//! glibc's vector loop is as fast at every distance, and the tunable
//! `glibc.cpu.x86_rep_movsb_threshold` selects it; tunables are read only when a program
//! starts, so the binary starts itself again, once, with it set.

use std::ffi::OsString;

/// The environment variable glibc reads its tunables from.
const TUNABLES: &str = "GLIBC_TUNABLES";

/// No copy is large enough for `rep movsb` (copies beyond the non-temporal threshold take
/// glibc's streaming path instead, as before).
const VECTOR_COPIES: &str = "glibc.cpu.x86_rep_movsb_threshold=4294967296";

/// Starts this program again with glibc's copies made by its vector loop when it runs on an
/// AMD processor, and returns otherwise. Call it first
/// in `main`, before any thread starts. Tunables the user set (any `GLIBC_TUNABLES`) are
/// left alone, which also ends the restart after one round; if starting again fails, the
/// program goes on as it is.
pub fn use_fast_copies() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return;
    }
    if std::env::var_os(TUNABLES).is_some() || !amd_processor() {
        return;
    }
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| OsString::from(&program));
    restart(program, name, args.collect());
}

#[cfg(unix)]
fn restart(program: std::path::PathBuf, name: OsString, args: Vec<OsString>) {
    use std::os::unix::process::CommandExt;
    // Returns only if the program could not be started.
    let _failed = std::process::Command::new(program)
        .arg0(name)
        .args(args)
        .env(TUNABLES, VECTOR_COPIES)
        .exec();
}

#[cfg(not(unix))]
fn restart(_program: std::path::PathBuf, _name: OsString, _args: Vec<OsString>) {}

/// Whether the processor is AMD's (or Hygon's, the same design), from `/proc/cpuinfo`.
fn amd_processor() -> bool {
    std::fs::File::open("/proc/cpuinfo")
        .is_ok_and(|cpuinfo| amd_vendor(std::io::BufReader::new(cpuinfo)))
}

/// Whether the first `vendor_id` line of a `/proc/cpuinfo` names AMD or Hygon (read no
/// further: on large machines the file is long).
fn amd_vendor(cpuinfo: impl std::io::BufRead) -> bool {
    cpuinfo
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("vendor_id"))
        .is_some_and(|line| line.contains("AuthenticAMD") || line.contains("HygonGenuine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_amd_and_hygon_processors_are_restarted() {
        let amd = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n";
        let hygon = "processor\t: 0\nvendor_id\t: HygonGenuine\n";
        let intel = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: AuthenticAMD-like\n";
        assert!(amd_vendor(amd.as_bytes()));
        assert!(amd_vendor(hygon.as_bytes()));
        assert!(!amd_vendor(intel.as_bytes()));
        assert!(!amd_vendor("".as_bytes()));
    }

    #[test]
    fn the_tunable_names_a_threshold_beyond_any_copy() {
        let (name, value) = VECTOR_COPIES.split_once('=').unwrap();
        assert_eq!(name, "glibc.cpu.x86_rep_movsb_threshold");
        assert!(value.parse::<u64>().unwrap() >= 1 << 32);
    }
}
