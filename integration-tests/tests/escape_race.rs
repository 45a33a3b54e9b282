//! A local user races the server: a folder inside DIR is swapped, again and again, with a
//! symbolic link to a folder outside (renameat2 with RENAME_EXCHANGE), while get, overwrite,
//! keep-both, rm and make-dir run on names inside that folder. Nothing outside DIR is ever
//! read, written or removed, whichever of the two the name points at when the server looks.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{blake3_hex, ftc, random_bytes, Output, Workspace};
use rustix::fs::{renameat_with, RenameFlags, CWD};

/// Size of the big files: over the server's 64 KiB bound for uploads gathered in memory, so
/// they go through the partial area and are then placed, while the small ones in the same
/// sends are written straight into their folder: both ways of placing a file race.
const BIG_LEN: usize = 200 * 1024;

/// How long the client side of the race runs, and at most how many rounds of commands.
const RACE_TIME: Duration = Duration::from_secs(4);
const MAX_ROUNDS: usize = 60;

/// The swapping thread stops by itself after this even if the test never tells it to.
const SWAPPER_LIMIT: Duration = Duration::from_secs(15);

/// Every entry under `root` by relative path: a file's BLAKE3, `dir`, or a link's target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            let what = if kind.is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                stack.push(path);
                "dir".to_owned()
            } else {
                blake3_hex(&fs::read(&path).unwrap())
            };
            out.insert(relative, what);
        }
    }
    out
}

/// Every regular file under `root`, hidden partial downloads included.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// What one kind of command did during the race.
#[derive(Default, Debug)]
struct Tally {
    succeeded: usize,
    failed: usize,
}

impl Tally {
    fn count(&mut self, output: &Output) {
        if output.code() == Some(0) {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
    }
}

#[test]
fn a_folder_swapped_for_a_symlink_never_lets_the_server_touch_anything_outside_dir() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let address = server.address();
    let src = ws.src();

    // Outside DIR: the files a confused server would read, replace or remove. The victim has
    // the size of the stored file of the same name, so the server would send all of it.
    let outside = ws.root.path().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    let outside_victim = random_bytes(BIG_LEN, 1);
    fs::write(outside.join("victim.bin"), &outside_victim).unwrap();
    fs::write(outside.join("big.bin"), random_bytes(BIG_LEN, 2)).unwrap();
    fs::write(outside.join("doomed.txt"), b"outside, must survive").unwrap();
    fs::write(outside.join("small.txt"), b"outside small").unwrap();
    fs::write(outside.join("sub/keep.txt"), b"outside, nested").unwrap();
    assert!(!outside.starts_with(ws.store_dir()));
    let outside_before = snapshot(&outside);
    let outside_victim_hash = blake3_hex(&outside_victim);

    // Inside DIR: the folder `box`, uploaded so the catalog knows its files.
    let inside_victim = random_bytes(BIG_LEN, 3);
    let inside_victim_hash = blake3_hex(&inside_victim);
    let seed = src.join("seed/box");
    fs::create_dir_all(&seed).unwrap();
    fs::write(seed.join("victim.bin"), &inside_victim).unwrap();
    fs::write(seed.join("big.bin"), random_bytes(BIG_LEN, 4)).unwrap();
    fs::write(seed.join("doomed.txt"), b"inside").unwrap();
    fs::write(seed.join("small.txt"), b"inside small").unwrap();
    let seed_arg = seed.to_str().unwrap();
    ftc(&src, &["send", &address, seed_arg, "--no-progress"]).all_stored(4);
    let folder = ws.recv().join("box");
    let link = ws.recv().join("ln");
    assert!(fs::symlink_metadata(&folder).unwrap().is_dir());
    std::os::unix::fs::symlink(&outside, &link).unwrap();

    // What the client sends each round: `over/box` with --overwrite (a big file, the file
    // `rm` then deletes, and an empty folder, which makes ftc ask for MakeDir), `keep/box`
    // keeping both (a small and a big file, each stored under a new numbered name each time).
    // Contents change every round, so no upload is ever skipped as done already.
    let over = src.join("over/box");
    fs::create_dir_all(over.join("sub")).unwrap();
    let keep = src.join("keep/box");
    fs::create_dir_all(&keep).unwrap();
    let got = ws.root.path().join("got");

    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    let mut gets = Tally::default();
    let mut overwrites = Tally::default();
    let mut keeps = Tally::default();
    let mut removals = Tally::default();
    let mut gets_of_inside = 0;
    let mut suspicious = Vec::new();
    let mut rounds = 0;
    thread::scope(|scope| {
        let swapper = scope.spawn(|| {
            let limit = Instant::now() + SWAPPER_LIMIT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < limit {
                renameat_with(CWD, &folder, CWD, &link, RenameFlags::EXCHANGE)
                    .expect("renameat2(RENAME_EXCHANGE)");
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        });
        let deadline = Instant::now() + RACE_TIME;
        while rounds < MAX_ROUNDS && Instant::now() < deadline {
            let into = got.join(rounds.to_string());
            let into_arg = into.to_str().unwrap();
            let get = ftc(
                &src,
                &[
                    "get",
                    &address,
                    "box/victim.bin",
                    "-o",
                    into_arg,
                    "--no-progress",
                ],
            );
            gets.count(&get);
            if get.code() == Some(0) {
                let received = fs::read(into.join("box/victim.bin")).unwrap();
                if blake3_hex(&received) == inside_victim_hash {
                    gets_of_inside += 1;
                }
            }
            // The stored victim never changes: a digest that does not match the catalog's
            // means the server read some other file (ftc names the digest it received).
            let said = format!("{}{}", get.stdout, get.stderr);
            if said.contains(&outside_victim_hash) {
                suspicious.push(format!("round {rounds}: get sent the file outside DIR"));
            } else if said.contains("hashes to") {
                suspicious.push(format!("round {rounds}: get sent other bytes:\n{get}"));
            }

            fs::write(
                over.join("big.bin"),
                random_bytes(BIG_LEN, 100 + rounds as u64),
            )
            .unwrap();
            fs::write(over.join("doomed.txt"), format!("doomed {rounds}")).unwrap();
            if rounds > 0 {
                fs::remove_dir(over.join(format!("sub/{}", rounds - 1))).unwrap();
            }
            fs::create_dir(over.join(format!("sub/{rounds}"))).unwrap();
            let sent = ftc(
                &src,
                &[
                    "send",
                    &address,
                    over.to_str().unwrap(),
                    "--overwrite",
                    "--no-progress",
                ],
            );
            overwrites.count(&sent);

            fs::write(keep.join("small.txt"), format!("kept both {rounds}")).unwrap();
            fs::write(
                keep.join("big.bin"),
                random_bytes(BIG_LEN, 200 + rounds as u64),
            )
            .unwrap();
            let kept = ftc(
                &src,
                &["send", &address, keep.to_str().unwrap(), "--no-progress"],
            );
            keeps.count(&kept);

            let removed = ftc(&src, &["rm", &address, "box/doomed.txt"]);
            removals.count(&removed);
            rounds += 1;
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
    });

    // Put the folder back under its own name, for the checks below.
    if fs::symlink_metadata(&folder).unwrap().is_symlink() {
        renameat_with(CWD, &folder, CWD, &link, RenameFlags::EXCHANGE).unwrap();
    }
    let swaps = swaps.into_inner();
    eprintln!(
        "{rounds} rounds, {swaps} swaps; get {gets:?} ({gets_of_inside} of the inside file), \
         overwrite {overwrites:?}, keep-both {keeps:?}, rm {removals:?}"
    );

    // Nothing outside DIR was read, written, created or removed. Every escape is listed
    // before the test fails, so one run shows which operations got out.
    let mut escapes = suspicious;
    for path in files_under(&got) {
        let bytes = fs::read(&path).unwrap();
        if blake3_hex(&bytes) == outside_victim_hash || bytes.starts_with(&outside_victim[..4096]) {
            escapes.push(format!("{} holds the file outside DIR", path.display()));
        }
    }
    let outside_after = snapshot(&outside);
    for (path, before) in &outside_before {
        match outside_after.get(path) {
            None => escapes.push(format!("outside/{path} was removed")),
            Some(after) if after != before => {
                escapes.push(format!("outside/{path} was changed ({before} -> {after})"));
            }
            Some(_) => {}
        }
    }
    for (path, after) in &outside_after {
        if !outside_before.contains_key(path) {
            escapes.push(format!("outside/{path} was created ({after})"));
        }
    }
    assert!(
        escapes.is_empty(),
        "the server reached outside DIR through the swapped folder:\n{}",
        escapes.join("\n")
    );

    // The race was real and the commands were not all refused.
    assert!(swaps > 100, "only {swaps} swaps");
    assert!(rounds >= 3, "only {rounds} rounds");
    assert!(
        gets_of_inside > 0,
        "no download delivered the stored file: {gets:?}"
    );
    assert!(
        overwrites.succeeded + keeps.succeeded + removals.succeeded > 0,
        "every upload and removal was refused: {overwrites:?} {keeps:?} {removals:?}"
    );
    assert!(server.log().lines().all(|line| !line.contains("panicked")));
}
