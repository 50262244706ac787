"""Incremental dumps, lazy restore and live migration of a 1 GiB process,
images on /dev/shm, every figure measured in this run.

    python3 bench/incremental.py [--mib 1024] [--runs 3]

The target (tests/targets/dirtier.c) fills MIB MiB; each round rewrites 1%
of its pages. Printed:
- pre-dump of all of it, then a pre-dump after one round: pages written and
  time of each (in-process, best of --runs), the ratios, and the same
  incremental pre-dump as a user runs it (`hiber pre-dump`, whole command);
- lazy restore: how long `hiber.restore(..., lazy_pages=True)` takes to have
  the process running while its memory is still to come, next to a plain
  restore of the same images;
- live migration on loopback: two pre-dumps while it runs, the final dump
  keeping the lazy pages back and serving them, a lazy restore fetching
  them; the downtime (final dump's start to the restored process running)
  next to a plain dump plus restore of the same process.
"""

import argparse
import ctypes
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import hiber  # noqa: E402

SHM = pathlib.Path("/dev/shm/hiber-bench-incremental")
PORT = 27191


def build_target():
    binary = pathlib.Path("/tmp/hiber-bench-dirtier")
    source = REPO / "tests" / "targets" / "dirtier.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-I", str(source.parent), "-o", str(binary), str(source)],
                       check=True)
    return binary


class Target:
    def __init__(self, binary, mib):
        self.out = SHM / "target.out"
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([str(binary), str(mib)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.pid = self.proc.pid
        self.rounds = 0
        self._wait_for("READY")

    def _wait_for(self, text):
        deadline = time.monotonic() + 60
        while text not in self.out.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"target: no {text!r}")
            time.sleep(0.005)

    def round(self):
        self.rounds += 1
        os.kill(self.pid, signal.SIGUSR1)
        self._wait_for(f"ROUND {self.rounds}")

    def reaped(self):
        """The dumped (killed) process, reaped: its PID is free again."""
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)  # ours: the original, or restored (we are the subreaper)
        except (ProcessLookupError, ChildProcessError):
            pass
        reap()


def reap():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def fresh(name):
    path = SHM / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def background(*args):
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "hiber", *map(str, args), "--status-fd",
                             str(write_end)], pass_fds=[write_end], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    os.close(write_end)
    ready = os.read(read_end, 1)
    os.close(read_end)
    if ready != b"\0":
        raise SystemExit(f"hiber {args[0]} did not start")
    return proc


def incremental(binary, mib, runs):
    print(f"-- incremental pre-dumps of {mib} MiB, 1% rewritten between them")
    full_t, inc_t, full_pages, inc_pages = [], [], 0, 0
    for _ in range(runs):
        t = Target(binary, mib)
        try:
            d1, d2 = fresh("1"), fresh("2")
            seconds, r = timed(lambda: hiber.pre_dump(t.pid, d1))
            full_t.append(seconds)
            full_pages = r.pages_written
            t.round()
            seconds, r = timed(lambda: hiber.pre_dump(t.pid, d2, prev_images_dir="../1"))
            inc_t.append(seconds)
            inc_pages = r.pages_written
            t.round()
            d3 = fresh("3")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hiber", "pre-dump", "-t", str(t.pid), "-D",
                            str(d3), "--prev-images-dir", "../2"], check=True, cwd=REPO)
            cli = time.perf_counter() - t0
        finally:
            t.stop()
    full, inc = min(full_t), min(inc_t)
    print(f"full pre-dump         {full:7.3f} s  {full_pages:8d} pages")
    print(f"incremental pre-dump  {inc:7.3f} s  {inc_pages:8d} pages   "
          f"pages {inc_pages / full_pages:6.2%} of full, time {inc / full:6.2%} of full")
    print(f"incremental, as the command `hiber pre-dump --prev-images-dir` "
          f"(start-up included): {cli:.3f} s")


def lazy_restore(binary, mib):
    print(f"-- lazy restore of {mib} MiB")
    t = Target(binary, mib)
    images = fresh("lazy")
    hiber.dump(t.pid, images)
    t.reaped()
    plain, _ = timed(lambda: hiber.restore(images))
    t.stop()
    daemon = background("lazy-pages", "-D", images, "-o", "lazy-pages.log")
    running, _ = timed(lambda: hiber.restore(images, lazy_pages=True))
    t0 = time.perf_counter()
    daemon.wait(120)
    rest = time.perf_counter() - t0
    t.stop()
    print(f"plain restore {plain:7.3f} s; lazy restore running after {running * 1000:6.1f} ms "
          f"({running / plain:5.1%} of plain), every page in {rest:.3f} s later")


def _frozen_seconds(images):
    """How long the dump had the tree frozen (freezing + frozen, stats-dump)."""
    out = subprocess.run([sys.executable, "-m", "hiber", "decode", "-i",
                          str(images / "stats-dump")], capture_output=True, check=True,
                         cwd=REPO).stdout
    d = json.loads(out)["entries"][0]["dump"]
    return (d["freezing_time"] + d["frozen_time"]) / 1e6


def migration(binary, mib):
    print(f"-- live migration of {mib} MiB over loopback (1% rewritten between steps)")
    t = Target(binary, mib)
    d1, d2, final = fresh("m1"), fresh("m2"), fresh("m3")
    hiber.pre_dump(t.pid, d1)
    t.round()
    hiber.pre_dump(t.pid, d2, prev_images_dir="../m1")
    t.round()
    # the destination's daemon is ready before the final dump (it reaches
    # the dump once the restore comes)
    daemon = background("lazy-pages", "-D", final, "-o", "lazy-pages.log", "--page-server",
                        "--address", "127.0.0.1", "--port", PORT)
    start = time.perf_counter()
    dumping = background("dump", "-t", t.pid, "-D", final, "-o", "dump.log",
                         "--prev-images-dir", "../m2", "--track-mem", "--lazy-pages",
                         "--port", PORT)
    dumped = time.perf_counter() - start
    served_at = time.perf_counter()
    t.reaped()
    run_hiber_restore = os.environ.get("HIBER_BENCH_KEEP")
    if run_hiber_restore:
        subprocess.run([sys.executable, "-m", "hiber", "restore", "-D", str(final), "-d",
                        "--lazy-pages", "-o", "restore.log", "-v4"], check=True, cwd=REPO)
    else:
        hiber.restore(final, lazy_pages=True)
    downtime = time.perf_counter() - start
    # the tree is frozen from the dump's freeze on, not from its start-up
    frozen = _frozen_seconds(final) + (time.perf_counter() - served_at)
    daemon.wait(120)
    dumping.wait(120)
    t.stop()
    # the same process, plain: dump (killed) and restore
    t = Target(binary, mib)
    plain = fresh("plain")
    start = time.perf_counter()
    hiber.dump(t.pid, plain)
    t.reaped()
    hiber.restore(plain)
    whole = time.perf_counter() - start
    t.stop()
    print(f"downtime (frozen until running) {frozen:7.3f} s; from the final dump command's "
          f"start {downtime:.3f} s (the dump {dumped:.3f} s of it)")
    print(f"plain dump + restore of the same process {whole:7.3f} s: the migration's downtime "
          f"is {frozen / whole:5.1%} of it")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["incremental", "lazy", "migration"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: hiber needs ptrace")
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # restored and tracker processes come to us
    binary = build_target()
    SHM.mkdir(parents=True, exist_ok=True)
    try:
        if not args.only or args.only == "incremental":
            incremental(binary, args.mib, args.runs)
        if not args.only or args.only == "lazy":
            lazy_restore(binary, args.mib)
        if not args.only or args.only == "migration":
            migration(binary, args.mib)
    finally:
        if not os.environ.get("HIBER_BENCH_KEEP"):
            shutil.rmtree(SHM, ignore_errors=True)
        reap()


if __name__ == "__main__":
    main()
