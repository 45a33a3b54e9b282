#!/usr/bin/env python3
"""Benchmark ft against rsync and the raw loopback link, on one machine, in one run.

Run it through bench/run.sh, which installs the tools and builds the binaries:

    bash bench/run.sh              # full: W1, W2, W3 x 5 runs, then the scaling runs
    bash bench/run.sh --smoke      # tiny workloads, one run: checks the script works

Workloads (generated once, kept under bench/out/):
  W1  one 1 GiB file of random bytes
  W2  10,000 files of 4 KiB in 100 folders
  W3  64 files of 16 MiB

Tools, all over 127.0.0.1:
  ft     ftc send -> fts (BLAKE3 verified end to end, fsync/syncfs before each Ack)
  rsync  rsync -a --whole-file -> a local rsync daemon (no end-to-end check, no fsync)
  iperf3 one TCP stream of the same number of bytes (memory to memory)
  nc     cat of the workload's files | nc -> nc > /dev/null
  fio    the disk alone: the large workloads' bytes written to one file with O_DIRECT and
         flushed once, no network (the floor under every tool's time)

Each cell: one warm-up run, then N timed runs (3N for W2, whose runs are short and vary
most); median and min-max wall time, MB/s (10^6 bytes/s of file content), and ft/rsync
throughput ratio. ft, rsync and rsync + sync run in turn, in the opposite order every other
run. "rsync + sync" times rsync followed by `sync`: rsync with its data on disk at the end,
as ft's is before each Ack.
Before every tool's run the page cache is flushed (`sync`) and the workload read once, so
each starts with the same clean, cached state; each workload starts with the kernel's caches
emptied (as root), so what ran before it does not slow its file lookups. Peak RSS of fts
(VmHWM) and ftc (rusage) per workload, and the CPU time of each ft and rsync run (every
core's busy time from /proc/stat: both ends, and for ft and "rsync + sync" the kernel's writeback; plain rsync
leaves its writeback to after its run). Nothing is deleted between runs: every
run receives into its own fresh folder, because on these machines creating many files soon
after deleting many is several times slower, and every tool must get the same conditions; and each workload
starts once the disks have been idle for a second. Everything under
bench/out/ is removed at the end (unless --keep), and the next run waits until that deletion
is six minutes old, for the same reason.
"""

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_random(path, size, block=MIB):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


def make_workloads(out, smoke):
    """Creates W1, W2, W3 (once) and returns {name: (path, files, bytes)}."""
    sizes = {
        "W1": (1, 8 * MIB if smoke else 1024 * MIB),
        "W2": (200 if smoke else 10_000, 4096),
        "W3": (4 if smoke else 64, 1 * MIB if smoke else 16 * MIB),
    }
    workloads = {}
    for name, (count, size) in sizes.items():
        base = os.path.join(out, "data", name)
        marker = os.path.join(base, ".complete")
        if not os.path.exists(marker):
            shutil.rmtree(base, ignore_errors=True)
            os.makedirs(base)
            if name == "W2":
                per_folder = max(1, count // 100)
                for i in range(count):
                    folder = os.path.join(base, f"d{i // per_folder:03}")
                    os.makedirs(folder, exist_ok=True)
                    with open(os.path.join(folder, f"f{i:05}.bin"), "wb") as f:
                        f.write(os.urandom(size))
            else:
                for i in range(count):
                    write_random(os.path.join(base, f"file{i:03}.bin"), size)
            open(marker, "w").close()
        workloads[name] = (base, count, count * size)
    subprocess.run(["sync"], check=False)
    return workloads


def send_paths(base):
    """What ftc/nc get for a workload: its folders (W2) or its files."""
    entries = sorted(e for e in os.listdir(base) if not e.startswith("."))
    return [os.path.join(base, e) for e in entries]


def all_files(base):
    files = []
    for dirpath, _, names in os.walk(base):
        files += [os.path.join(dirpath, n) for n in sorted(names) if not n.startswith(".")]
    return sorted(files)


class Fts:
    """A running fts with its own fresh directory."""

    def __init__(self, bin_dir, directory, extra=()):
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "fts"), "--dir", directory, "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        line = self.proc.stdout.readline()
        match = re.match(r"listening on (\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"fts did not start: {line!r}")
        self.address = match.group(1)
        # A fresh directory: fts prints its fingerprint, then makes an admin and prints the
        # connect string (ft://admin:TOKEN@HOST:PORT/#SHA256:...) and the token.
        fingerprint = self.proc.stdout.readline().split()[-1]
        for line in iter(self.proc.stdout.readline, ""):
            match = re.search(r"ft://([^:]+):([0-9a-f]+)@", line)
            if match:
                user, token = match.groups()
                break
        else:
            self.proc.kill()
            raise RuntimeError("fts printed no connect string for its first admin")
        # Every ftc run while this server lives logs in as that admin, with the certificate
        # pinned, and keeps its own known_servers away from the user's.
        os.environ.update({
            "FTC_USER": user, "FTC_TOKEN": token, "FTC_FINGERPRINT": fingerprint,
            "XDG_CONFIG_HOME": os.path.join(directory + "-ftc-config"),
        })

    def peak_rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def busy_cpu_seconds():
    """CPU time all cores have spent working, since boot (/proc/stat): over a run, what every
    process of a tool and the kernel on its behalf cost. Time the hypervisor gave to other
    machines (steal) is not ours and not counted."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Busy CPU seconds of the machine over the runs of one tool (one workload)."""

    def __init__(self):
        self.samples = []

    def measure(self, run):
        before = busy_cpu_seconds()
        result = run()
        self.samples.append(busy_cpu_seconds() - before)
        return result

    def median(self):
        return statistics.median(self.samples) if self.samples else None


def run_timed(argv, **kwargs):
    """Runs a command; returns (seconds, peak RSS KiB of that process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"{' '.join(argv[:3])}... failed ({proc.returncode}): {err[-2000:]}")
    return elapsed, usage.ru_maxrss


class Rsyncd:
    def __init__(self, out):
        self.root = os.path.join(out, "recv-rsync")
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port()
        conf = os.path.join(out, "rsyncd.conf")
        with open(conf, "w") as f:
            f.write(
                f"pid file = {out}/rsyncd.pid\nport = {self.port}\naddress = 127.0.0.1\n"
                f"use chroot = no\n[bench]\npath = {self.root}\nread only = no\n"
                # As root the daemon would otherwise switch to "nobody"; as anyone else it
                # cannot switch at all.
                + ("uid = root\ngid = root\n" if os.geteuid() == 0 else "")
            )
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsync daemon did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Sshd:
    """A private sshd on a loopback port, with a throwaway host key and a throwaway client
    key, for rsync over ssh: the encrypted way to send files that ft's TLS is compared with."""

    def __init__(self, out):
        self.dir = os.path.abspath(os.path.join(out, "ssh"))
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        host_key, client_key = os.path.join(self.dir, "host"), os.path.join(self.dir, "client")
        for key in (host_key, client_key):
            if not os.path.exists(key):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        authorized = os.path.join(self.dir, "authorized_keys")
        shutil.copy(client_key + ".pub", authorized)
        os.chmod(authorized, 0o600)
        self.port = free_port()
        conf = os.path.join(self.dir, "sshd_config")
        with open(conf, "w") as f:
            f.write(
                f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {authorized}\nPidFile {self.dir}/sshd.pid\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
                "StrictModes no\n"
            )
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", conf], stderr=subprocess.DEVNULL)
        self.ssh = (f"ssh -p {self.port} -i {client_key} -o BatchMode=yes "
                    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def rsync_ssh_run(sshd, out, workload, tag):
    """rsync over ssh into a folder of `out`, then `sync` (ft's data is on disk at its Ack)."""
    dest = os.path.abspath(os.path.join(out, "recv-ssh", tag))
    os.makedirs(dest, exist_ok=True)
    start = time.perf_counter()
    run_timed(["rsync", "-a", "--whole-file", "-e", sshd.ssh, *send_paths(workload[0]), f"127.0.0.1:{dest}/"])
    subprocess.run(["sync"], check=False)
    return time.perf_counter() - start


def encrypted(args, workloads, ft_medians):
    """ft (TLS) against rsync over ssh, the encrypted peer, on each workload."""
    if not (have("rsync") and os.path.exists("/usr/sbin/sshd") and have("ssh-keygen")):
        return ["", "rsync over ssh: not measured (sshd or ssh-keygen missing)."]
    try:
        sshd = Sshd(args.out)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
        return ["", f"rsync over ssh: not measured ({err})."]
    lines = ["", "Encrypted peers: ft over TLS 1.3 against `rsync -a --whole-file -e ssh` followed by "
             "`sync` (median of the runs; ft's figure is its median from the table above):", "",
             "| workload | ft (TLS) | rsync -e ssh + sync | ft / (rsync -e ssh + sync) |", "|---|---|---|---|"]
    try:
        for name, workload in workloads.items():
            if args.only and name not in args.only.split(",") or name not in ft_medians:
                continue
            times = []
            for i in range(1 if args.smoke else 3):
                settle(workload)
                times.append(rsync_ssh_run(sshd, args.out, workload, f"{name}-ssh{i}"))
            ssh = statistics.median(times)
            ft = ft_medians[name]
            lines.append(f"| {name} | {ft:.2f} s | {ssh:.2f} s | {ssh / ft:.2f}× |")
            print(lines[-1], flush=True)
            shutil.rmtree(os.path.join(args.out, "recv-ssh"), ignore_errors=True)
    finally:
        sshd.stop()
    return lines


def relay(args, workloads):
    """alice -> bob through fts (live relay, nothing stored on the server) against a direct
    upload to the same fts, on W1 and W3: the same bytes, the same run."""
    lines = ["", "Relay: `ftc send --to bob` to a listening `ftc listen --yes --once`, through fts on "
             "loopback, against a direct `ftc send` to the same fts (median of the runs); fts's "
             "peak memory over the relay runs:", "",
             "| workload | direct upload | relayed | relayed / direct throughput | fts peak |",
             "|---|---|---|---|---|"]
    ftc = os.path.join(args.bin_dir, "ftc")
    for name in ("W1", "W3"):
        if name not in workloads or (args.only and name not in args.only.split(",")):
            continue
        workload = workloads[name]
        base = workload[0]
        fts = Fts(args.bin_dir, os.path.join(args.out, "recv-ft", f"{name}-relay"))
        try:
            added = subprocess.run(
                [os.path.join(args.bin_dir, "fts"), "--dir", os.path.join(args.out, "recv-ft", f"{name}-relay"),
                 "user", "add", "bob", "--role", "write"],
                capture_output=True, text=True, check=True)
            bob_token = added.stdout.strip().splitlines()[-1]
            direct, relayed = [], []
            for i in range(1 if args.smoke else 3):
                settle(workload)
                direct.append(run_timed([ftc, "send", fts.address, *send_paths(base), "--no-progress",
                                         "--into", f"direct{i}"])[0])
                inbox = os.path.join(args.out, f"bob-{name}-{i}")
                bob_env = {**os.environ, "FTC_USER": "bob", "FTC_TOKEN": bob_token}
                listener = subprocess.Popen([ftc, "listen", fts.address, "-o", inbox, "--yes", "--once"],
                                            env=bob_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.time() + 20
                while time.time() < deadline:
                    users = subprocess.run([ftc, "users", fts.address, "--json"], env=bob_env,
                                           capture_output=True, text=True)
                    if '"listening":true' in users.stdout.replace(" ", ""):
                        break
                    time.sleep(0.05)
                settle(workload)
                relayed.append(run_timed([ftc, "send", fts.address, *send_paths(base), "--no-progress",
                                          "--to", "bob"])[0])
                listener.wait(timeout=120)
                shutil.rmtree(inbox, ignore_errors=True)
            d, r = statistics.median(direct), statistics.median(relayed)
            lines.append(f"| {name} | {d:.2f} s | {r:.2f} s | {d / r:.0%} | "
                         f"{fts.peak_rss_kib() / 1024:.0f} MiB |")
            print(lines[-1], flush=True)
        except (OSError, RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            lines.append(f"| {name} | relay not measured: {err} | | | |")
        finally:
            fts.stop()
            shutil.rmtree(os.path.join(args.out, "recv-ft", f"{name}-relay"), ignore_errors=True)
    return lines


def have(tool):
    return shutil.which(tool) is not None


class BackgroundWriter:
    """Another program writing to the same filesystem, as on a real server: `dd` overwriting
    one file of `megabytes` MiB again and again (conv=notrunc, so the page cache stays full
    of dirty pages), until stopped or `longest` seconds have passed; its file is removed when
    it stops."""

    def __init__(self, out, megabytes, longest):
        self.path = os.path.join(out, "background-writer.bin")
        self.megabytes = megabytes
        self.deadline = time.monotonic() + longest
        self.stopping = threading.Event()
        self.proc = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        time.sleep(3)  # let the dirty pages pile up before the first timed run

    def _loop(self):
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.stopping.is_set():
                    return
                self.proc = subprocess.Popen(
                    ["dd", "if=/dev/zero", f"of={self.path}", "bs=1M", f"count={self.megabytes}",
                     "conv=notrunc"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.proc.wait()

    def stop(self):
        self.stopping.set()
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(timeout=30)
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def busy_disk(args, workloads, ft_medians, rsyncd):
    """ft against rsync with the same promise (`--fsync`: every file on disk before the next)
    and rsync + sync, while another program writes to the same filesystem."""
    if not rsyncd:
        return ["", "Busy disk: not measured (rsync missing)."]
    runs = 1 if args.smoke else 3
    lines = ["", "Busy disk: the same runs while `dd` overwrites a "
             f"{128 if args.smoke else 2048} MiB file on the same filesystem in a loop "
             "(median of the runs; ft quiet is the median from the first table):", "",
             "| workload | ft quiet | ft busy | busy / quiet | rsync --fsync busy | "
             "ft / (rsync --fsync) | rsync + sync busy | ft / (rsync + sync) | disk alone busy |",
             "|---|---|---|---|---|---|---|---|---|"]
    writer = BackgroundWriter(args.out, 128 if args.smoke else 2048, longest=1800)
    try:
        for name, workload in workloads.items():
            if args.only and name not in args.only.split(",") or name not in ft_medians:
                continue
            ft_times, fsync_times, sync_times, alone_times = [], [], [], []
            for i in range(runs):
                tag = f"{name}-busy{i}"
                ft_times.append(ft_run(args.bin_dir, args.out, workload, tag)[0])
                fsync_times.append(rsync_run(rsyncd, workload, f"{tag}-fsync", extra=("--fsync",)))
                sync_times.append(rsync_durable_run(rsyncd, workload, f"{tag}-sync"))
                if workload[2] >= SMALL_WORKLOAD_BYTES or args.smoke:
                    alone = disk_alone_run(args.out, workload, tag)
                    if alone is not None:
                        alone_times.append(alone)
            ft, fsync, synced = (statistics.median(t) for t in (ft_times, fsync_times, sync_times))
            alone = f"{statistics.median(alone_times):.2f} s" if alone_times else "n/a"
            quiet = ft_medians[name]
            lines.append(
                f"| {name} | {quiet:.2f} s | {ft:.2f} s ({min(ft_times):.2f}–{max(ft_times):.2f}) | "
                f"{ft / quiet:.1f}× | {fsync:.2f} s | {fsync / ft:.2f}× | {synced:.2f} s | "
                f"{synced / ft:.2f}× | {alone} |")
            print(lines[-1], flush=True)
    finally:
        writer.stop()
    return lines


def ft_run(bin_dir, out, workload, tag, extra_send=(), cpu=None):
    base = workload[0]
    fts = Fts(bin_dir, os.path.join(out, "recv-ft", tag))
    argv = [os.path.join(bin_dir, "ftc"), "send", fts.address, *send_paths(base), "--no-progress", *extra_send]
    try:
        seconds, ftc_rss = (cpu or CpuMeter()).measure(lambda: run_timed(argv))
        return seconds, fts.peak_rss_kib(), ftc_rss
    finally:
        fts.stop()


def ft_json_run(bin_dir, out, paths, tag, extra=()):
    """One ftc send with --json; returns (seconds, the summary object)."""
    import json
    fts = Fts(bin_dir, os.path.join(out, "recv-ft", tag))
    try:
        start = time.perf_counter()
        done = subprocess.run(
            [os.path.join(bin_dir, "ftc"), "send", fts.address, *paths, "--no-progress", "--json", *extra],
            capture_output=True, text=True, check=True,
        )
        seconds = time.perf_counter() - start
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        return seconds, summary
    finally:
        fts.stop()


def compression(args, smoke, rsyncd):
    """ft with and without --compress on a text corpus (and on W1's random bytes)."""
    out = os.path.join(args.out, "compression")
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(out, "corpus.txt")
    size = 8 * MIB if smoke else 256 * MIB
    words = [w.encode() for w in (
        "the of and to in is that for it as with was on be by this are or from at which file "
        "server client transfer verified hash catalog storage network log error warning info "
        "request response byte chunk frame session upload download folder name size time"
    ).split()]
    with open(corpus, "wb") as f:
        written, seed = 0, os.urandom(1 << 16)
        while written < size:
            line = b" ".join(words[b % len(words)] for b in seed[written % 60000: written % 60000 + 12]) + b"\n"
            f.write(line)
            written += len(line)
    subprocess.run(["sync"], check=False)
    lines = ["", "Compression (zstd level 1, `ftc send --compress`) on a text corpus of "
             f"{os.path.getsize(corpus) // MIB} MiB, loopback:", "",
             "| tool | time | MB/s | bytes on the wire |", "|---|---|---|---|"]
    total = os.path.getsize(corpus)
    for label, extra in (("ft", ()), ("ft --compress", ("--compress",))):
        times, wire = [], 0
        for i in range(1 if smoke else 3):
            seconds, summary = ft_json_run(args.bin_dir, out, [corpus], f"zstd-{len(extra)}-{i}", extra)
            times.append(seconds)
            wire = summary.get("bytes_on_wire", 0)
            subprocess.run(["sync"], check=False)
        med = statistics.median(times)
        lines.append(f"| {label} | {med:.2f} s | {total / med / 1e6:.0f} | {wire} ({wire / total:.0%}) |")
        print(lines[-1], flush=True)
    if rsyncd:
        seconds, _ = run_timed(["rsync", "-a", "--whole-file", corpus, f"rsync://127.0.0.1:{rsyncd.port}/bench/zstd/"])
        lines.append(f"| rsync --whole-file | {seconds:.2f} s | {total / seconds / 1e6:.0f} | {total} (100%) |")
        seconds, _ = run_timed(["rsync", "-a", "--whole-file", "-z", corpus, f"rsync://127.0.0.1:{rsyncd.port}/bench/zstd-z/"])
        lines.append(f"| rsync --whole-file -z | {seconds:.2f} s | {total / seconds / 1e6:.0f} | (not reported) |")
    return lines


def rsync_run(rsyncd, workload, tag, cpu=None, extra=()):
    base = workload[0]
    argv = ["rsync", "-a", "--whole-file", *extra, *send_paths(base),
            f"rsync://127.0.0.1:{rsyncd.port}/bench/{tag}/"]
    seconds, _ = (cpu or CpuMeter()).measure(lambda: run_timed(argv))
    return seconds


def rsync_durable_run(rsyncd, workload, tag, cpu=None):
    """rsync, then `sync`, timed together: what rsync costs when its data must be on disk
    before the run counts as done, as ft's is before each Ack."""
    def run():
        start = time.perf_counter()
        rsync_run(rsyncd, workload, tag)
        subprocess.run(["sync"], check=False)
        return time.perf_counter() - start
    return (cpu or CpuMeter()).measure(run)


def disk_alone_run(out, workload, tag):
    """The floor under every tool's time for a workload of large files: as many bytes written
    by `fio` to one new file around the page cache (O_DIRECT, 1 MiB writes, four in flight)
    and flushed once, with nothing else to do (no network, no hashing, no per-file flush).
    fio's buffers are random, as a disk that compresses or skips zeros would flatter zeros.
    The file is removed after the timing (deleting a gigabyte takes 0.6 s of discards here).
    None without fio, or for a workload under fio's 1 MiB write (the smoke run's W2)."""
    if not have("fio") or workload[2] < MIB:
        return None
    path = os.path.join(out, f"disk-alone-{tag}.bin")
    argv = ["fio", "--name=disk-alone", f"--filename={path}", f"--size={workload[2]}",
            "--bs=1M", "--iodepth=4", "--ioengine=libaio", "--direct=1", "--rw=write",
            "--end_fsync=1"]
    try:
        return run_timed(argv)[0]
    finally:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def discard_received(out, rsyncd, tags):
    """Removes what the runs of one workload received, once all of them are done (nothing is
    deleted between runs). Only for workloads of a few large files: deleting thousands of
    small files is the trap described at the top, while keeping every copy of the gigabyte
    workloads until the very end (four tools, six runs each) fills the disk."""
    for tag in tags:
        shutil.rmtree(os.path.join(out, "recv-ft", tag), ignore_errors=True)
        if rsyncd:
            for suffix in ("", "-sync"):
                shutil.rmtree(os.path.join(rsyncd.root, tag + suffix), ignore_errors=True)


def disk_activity():
    """Completed reads, writes and discards of every disk (/proc/diskstats), and the I/O in
    flight."""
    with open("/proc/diskstats") as f:
        return [tuple(line.split()[3:]) for line in f]


def wait_for_quiet_disks(longest=30.0):
    """Waits (at most `longest` seconds) until no disk has done anything for a second. Deleting
    a workload's gigabytes sends the disk writes and discards for a while after `rm` returns;
    whichever tool runs next would wait behind them (ft's syncfs does, rsync does not), so
    every workload starts on idle disks."""
    subprocess.run(["sync"], check=False)
    deadline = time.time() + longest
    before = disk_activity()
    quiet_since = time.time()
    while time.time() < deadline:
        time.sleep(0.25)
        now = disk_activity()
        if now != before:
            before, quiet_since = now, time.time()
        elif time.time() - quiet_since >= 1.0:
            return


# ext4 without a journal skips, when it allocates an inode, every free one freed in the last
# minute, or in the last six if its inode-table block is dirty again (`recently_deleted` in
# fs/ext4/ialloc.c; new files in the same block make it dirty). So for up to six minutes after
# a mass deletion, creating files costs more: with the deletion of the previous run's half a
# million files fresh, W2 runs fell into two groups, ft 0.19-0.22 s or 0.26-0.30 s, and a
# profile of a slow one spent 17 % of the server's time in that check.
RECENT_DELETION_WINDOW = 6 * 60
LAST_CLEANUP = os.path.join(ROOT, "bench", ".last-cleanup")


def record_cleanup():
    """Notes when this run deleted its files (the next run waits out the window above)."""
    subprocess.run(["sync"], check=False)
    with open(LAST_CLEANUP, "w") as f:
        f.write(f"{time.time()}\n")


def wait_out_recent_cleanup():
    """Waits until the previous run's deletion is older than RECENT_DELETION_WINDOW, so
    back-to-back runs measure the same thing as a first run. Deletions by anything else on the
    filesystem are not known here (see the README)."""
    try:
        with open(LAST_CLEANUP) as f:
            deleted_at = float(f.read().strip())
    except (OSError, ValueError):
        return
    # At most the window itself, should the clock have gone back since.
    wait = min(deleted_at + RECENT_DELETION_WINDOW - time.time(), RECENT_DELETION_WINDOW)
    if wait > 0:
        print(f"waiting {wait:.0f} s: the previous run deleted its files {time.time() - deleted_at:.0f} s "
              "ago, and ext4 creates files slowly for six minutes after a mass deletion", flush=True)
        time.sleep(wait)


# A workload under this size (W2) gets this many times the runs: a run takes a fraction of a
# second, and its times vary the most (medians of five runs gave 1.66x and 2.08x rsync in two
# full runs minutes apart, the same binaries).
SMALL_WORKLOAD_BYTES = 100_000_000
SMALL_WORKLOAD_RUN_FACTOR = 3


def drop_kernel_caches():
    """Empties the kernel's page, dentry and inode caches (as root; otherwise does nothing),
    so each workload starts from the same state whatever ran before. On these machines the
    dentry cache grows by millions of entries over a day of tests and every file lookup
    slows down: W2 took ft 0.31 s and rsync 0.53 s with 3 million cached entries, and 0.22 s
    and 0.43 s right after dropping them (the same binaries, minutes apart). Files are not
    deleted, so this does not trigger the slow creation that follows a deletion."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def settle(workload):
    """Same starting conditions for every tool: nothing dirty in the page cache (rsync does not
    fsync, so the next tool would pay for writing its data back), and the workload's files
    read once, so they are cached. (These machines run DAMON with a `pageout` scheme, which
    evicts page cache left untouched for seconds: 23 % of a W2 folder's pages were gone 5 s
    after it was read. Without this the first tool after a pause reads from disk and the
    next does not.)"""
    subprocess.run(["sync"], check=False)
    for path in all_files(workload[0]):
        with open(path, "rb") as f:
            while f.read(4 * MIB):
                pass


def iperf_run(total_bytes):
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        seconds, _ = run_timed(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-n", str(total_bytes), "-P", "1"])
        return seconds
    finally:
        server.wait(timeout=30)


def nc_run(workload):
    port = free_port()
    sink = subprocess.Popen(["nc", "-l", "127.0.0.1", str(port)], stdout=subprocess.DEVNULL)
    time.sleep(0.2)
    files = all_files(workload[0])
    start = time.perf_counter()
    sender = subprocess.Popen(["nc", "-N", "127.0.0.1", str(port)], stdin=subprocess.PIPE)
    for path in files:
        with open(path, "rb") as f:
            shutil.copyfileobj(f, sender.stdin, 4 * MIB)
    sender.stdin.close()
    sender.wait(timeout=600)
    sink.wait(timeout=600)
    return time.perf_counter() - start


def summarize(times, total_bytes):
    med = statistics.median(times)
    return {
        "median": med,
        "min": min(times),
        "max": max(times),
        "mbps": total_bytes / med / 1e6,
    }


def cell(stats):
    if not stats:
        return "n/a"
    return f"{stats['mbps']:.0f} MB/s ({stats['median']:.2f} s; {stats['min']:.2f}–{stats['max']:.2f})"


def cpu_cell(meter, stats):
    busy = meter.median()
    if busy is None or not stats:
        return "n/a"
    share = busy / (stats["median"] * (os.cpu_count() or 1))
    return f"{busy:.2f} s ({share:.0%})"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, one run, no scaling")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-disk runs")
    parser.add_argument("--keep", action="store_true", help="keep bench/out afterwards")
    parser.add_argument("--only", help="comma-separated workloads to run, e.g. W2,W3")
    args = parser.parse_args()
    runs, warmups = (1, 0) if args.smoke else (args.runs, 1)
    small_runs = runs if args.smoke else runs * SMALL_WORKLOAD_RUN_FACTOR

    if not args.smoke:
        wait_out_recent_cleanup()
    os.makedirs(args.out, exist_ok=True)
    report = [
        f"Machine: {machine()}. Runs per cell: {runs} after {warmups} warm-up "
        f"({small_runs} for workloads under "
        f"{SMALL_WORKLOAD_BYTES // 1_000_000} MB).",
        "",
    ]
    print(report[0], flush=True)
    workloads = make_workloads(args.out, args.smoke)
    rsyncd = Rsyncd(args.out) if have("rsync") else None

    header = ("| workload | ft (ftc → fts) | rsync --whole-file | ft / rsync | rsync + sync | "
              "ft / (rsync + sync) | iperf3 (1 stream) | nc | fts peak RSS | ftc peak RSS |")
    rows = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    cpu_rows, floor_rows = [], []
    ft_medians = {}
    try:
        for name, workload in workloads.items():
            if args.only and name not in args.only.split(","):
                continue
            _, files, total = workload
            cell_runs = small_runs if total < SMALL_WORKLOAD_BYTES else runs
            wait_for_quiet_disks()
            drop_kernel_caches()
            ft_times, rs_times, rsd_times, ip_times, nc_times = [], [], [], [], []
            ft_cpu, rs_cpu, rsd_cpu = CpuMeter(), CpuMeter(), CpuMeter()
            fts_rss = ftc_rss = 0
            for i in range(warmups + cell_runs):
                tag = f"{name}-run{i}"
                # Warm-up runs are measured too, then left out below with their times. The
                # order of the tools is reversed every other run, so none of them is always
                # the one that runs right after the caches were emptied or another's writes.
                results = {}
                tools = [
                    ("ft", lambda: ft_run(args.bin_dir, args.out, workload, tag, cpu=ft_cpu)),
                    ("rsync", lambda: rsync_run(rsyncd, workload, tag, cpu=rs_cpu) if rsyncd else None),
                    ("rsync+sync", lambda: rsync_durable_run(rsyncd, workload, f"{tag}-sync", cpu=rsd_cpu)
                     if rsyncd else None),
                ]
                for tool, run in tools if i % 2 == 0 else reversed(tools):
                    settle(workload)
                    results[tool] = run()
                seconds, server_rss, client_rss = results["ft"]
                rs, rsd = results["rsync"], results["rsync+sync"]
                settle(workload)
                ip = iperf_run(total) if have("iperf3") else None
                settle(workload)
                nc = nc_run(workload) if have("nc") else None
                if i < warmups:
                    for meter in (ft_cpu, rs_cpu, rsd_cpu):
                        meter.samples.clear()
                    continue
                ft_times.append(seconds)
                fts_rss, ftc_rss = max(fts_rss, server_rss), max(ftc_rss, client_rss)
                for store, value in ((rs_times, rs), (rsd_times, rsd), (ip_times, ip), (nc_times, nc)):
                    if value is not None:
                        store.append(value)
                print(f"  {tag}: ft {seconds:.2f}s  rsync {rs if rs is None else round(rs, 2)}s", flush=True)
            if files < 1000:
                discard_received(args.out, rsyncd, [f"{name}-run{i}" for i in range(warmups + cell_runs)])
            ft = summarize(ft_times, total)
            ft_medians[name] = statistics.median(ft_times)
            rs = summarize(rs_times, total) if rs_times else None
            ratio = f"{ft['mbps'] / rs['mbps']:.2f}×" if rs else "n/a"
            rsd = summarize(rsd_times, total) if rsd_times else None
            durable_ratio = f"{ft['mbps'] / rsd['mbps']:.2f}×" if rsd else "n/a"
            label = f"{name}: {files} × {total // files // 1024} KiB" if files > 1 else f"{name}: 1 × {total // MIB} MiB"
            rows.append(
                f"| {label} | {cell(ft)} | {cell(rs)} | {ratio} | {cell(rsd)} | {durable_ratio} | "
                f"{cell(summarize(ip_times, total) if ip_times else None)} | "
                f"{cell(summarize(nc_times, total) if nc_times else None)} | "
                f"{fts_rss / 1024:.1f} MiB | {ftc_rss / 1024:.1f} MiB |"
            )
            print(rows[-1], flush=True)
            cpu_rows.append(
                f"| {label} | {cpu_cell(ft_cpu, ft)} | {cpu_cell(rs_cpu, rs)} | {cpu_cell(rsd_cpu, rsd)} |"
            )
            if total >= SMALL_WORKLOAD_BYTES or args.smoke:
                alone_times = [disk_alone_run(args.out, workload, f"{name}-{i}")
                               for i in range(1 if args.smoke else 3)]
                if None not in alone_times:
                    alone = statistics.median(alone_times)
                    floor_rows.append(f"| {name} | {alone:.2f} s | {ft_medians[name]:.2f} s | "
                                      f"{ft_medians[name] / alone:.2f}× |")
        report += rows
        report += [
            "",
            "CPU time per run, all processes and the kernel, median (writeback is inside ft's "
            "and rsync + sync's runs; plain rsync leaves it to after its run); in brackets the "
            "share of the machine's cores over the median run time:",
            "",
            "| workload | ft | rsync --whole-file | rsync + sync |",
            "|---|---|---|---|",
            *cpu_rows,
            "",
            "The disk alone: as many bytes as each large workload written by `fio` to one "
            "file around the page cache (1 MiB writes, four in flight) and flushed once "
            "(median of 3), the floor under any tool's time (empty without fio):",
            "",
            "| workload | disk alone | ft | ft / disk alone |",
            "|---|---|---|---|",
            *floor_rows,
        ]
        report += encrypted(args, workloads, ft_medians)
        report += relay(args, workloads)
        if not args.no_busy:
            report += busy_disk(args, workloads, ft_medians, rsyncd)
        if not args.only:
            report += compression(args, args.smoke, rsyncd)

        if not (args.smoke or args.no_scaling):
            report += ["", *scaling(args)]
    finally:
        if rsyncd:
            rsyncd.stop()
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)
            if not args.smoke:
                record_cleanup()

    text = "\n".join(report)
    print("\n" + text)
    results = os.path.join(ROOT, "bench", "results.md" if not args.smoke else "smoke-results.md")
    with open(results, "w") as f:
        f.write(text + "\n")
    print(f"\nwritten to {results}")


def scaling(args):
    """Time vs file size, vs number of files, and aggregate throughput vs concurrent clients."""
    out = os.path.join(args.out, "scaling")
    os.makedirs(out, exist_ok=True)
    lines = ["Scaling (ft only, one run each):", "", "| file size | time | MB/s |", "|---|---|---|"]
    for size_mib in (1, 16, 256, 1024, 4096):
        path = os.path.join(out, f"size-{size_mib}")
        os.makedirs(path, exist_ok=True)
        write_random(os.path.join(path, "file.bin"), size_mib * MIB, 4 * MIB)
        subprocess.run(["sync"], check=False)
        seconds, _, _ = ft_run(args.bin_dir, out, (path, 1, size_mib * MIB), f"size-{size_mib}")
        lines.append(f"| {size_mib} MiB | {seconds:.2f} s | {size_mib * MIB / seconds / 1e6:.0f} |")
        print(lines[-1], flush=True)
        os.remove(os.path.join(path, "file.bin"))
        shutil.rmtree(os.path.join(out, "recv-ft", f"size-{size_mib}"), ignore_errors=True)

    lines += ["", "| files of 4 KiB | time | files/s |", "|---|---|---|"]
    for count in (100, 1000, 10_000, 100_000):
        path = os.path.join(out, f"count-{count}")
        per_folder = 1000
        for i in range(count):
            folder = os.path.join(path, f"d{i // per_folder:03}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"f{i:06}"), "wb") as f:
                f.write(os.urandom(4096))
        subprocess.run(["sync"], check=False)
        seconds, _, _ = ft_run(args.bin_dir, out, (path, count, count * 4096), f"count-{count}")
        lines.append(f"| {count} | {seconds:.2f} s | {count / seconds:.0f} |")
        print(lines[-1], flush=True)

    lines += ["", "| concurrent clients (4 MiB each) | time | aggregate MB/s | fts peak RSS |", "|---|---|---|---|"]
    data = os.path.join(out, "clients")
    os.makedirs(data, exist_ok=True)
    for i in range(200):
        write_random(os.path.join(data, f"client{i:03}.bin"), 4 * MIB)
    for clients in (1, 10, 50, 200):
        subprocess.run(["sync"], check=False)
        # All the clients come from one address here, unlike on a network.
        fts = Fts(args.bin_dir, os.path.join(out, f"recv-clients-{clients}"),
                  extra=("--max-connections-per-address", "4096"))
        try:
            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [os.path.join(args.bin_dir, "ftc"), "send", fts.address,
                     os.path.join(data, f"client{i:03}.bin"), "--no-progress"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                for i in range(clients)
            ]
            failed = sum(1 for p in procs if p.wait(timeout=1200) != 0)
            seconds = time.perf_counter() - start
            rss = fts.peak_rss_kib()
        finally:
            fts.stop()
        note = f" ({failed} failed)" if failed else ""
        lines.append(f"| {clients}{note} | {seconds:.2f} s | {clients * 4 * MIB / seconds / 1e6:.0f} | {rss / 1024:.1f} MiB |")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    sys.exit(main())
