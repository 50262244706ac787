"""Dump and restore speed: a process with 16 MiB and 1 GiB of touched
anonymous memory, images on /dev/shm, against a memcpy of the same size in
the same run.

    python3 bench/checkpoint.py [--runs N]

Each run dumps the process (killing it) and restores it from those images.
For each size it prints the first (cold) run and the best of the warm runs:
in this VM the first touch of fresh memory costs 1.3-2.7 us per page
(kernel-facts), and both a dump (into fresh tmpfs pages) and a restore (into
fresh process pages) touch every page, so a cold run measures the machine
more than hiber. CRIU 4.2's reference figures here are warm: dump 16 MiB in
~0.045 s and 1 GiB in ~0.6 s; restore 16 MiB in ~0.04 s and 1 GiB in ~0.56 s.
"""

import argparse
import ctypes
import os
import pathlib
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hiber import dump, restore  # noqa: E402

GIB = 1 << 30


def build_target():
    binary = pathlib.Path("/tmp/hiber-bench-bigmem")
    source = REPO / "tests" / "targets" / "bigmem.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def memcpy_seconds(size):
    """Best of 3 copies between two already-touched buffers."""
    src = ctypes.create_string_buffer(size)
    dst = ctypes.create_string_buffer(size)
    ctypes.memset(src, 1, size)
    ctypes.memset(dst, 2, size)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        ctypes.memmove(dst, src, size)
        best = min(best, time.perf_counter() - t)
    return best


def bench_size(binary, mib, runs):
    size = mib << 20
    target = subprocess.Popen([str(binary), str(mib)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    target.stdout.readline()  # "ready": every page touched
    pid = target.pid
    images = pathlib.Path(f"/dev/shm/hiber-bench-{mib}")
    dumps, restores = [], []
    try:
        for _ in range(runs):
            shutil.rmtree(images, ignore_errors=True)
            t = time.perf_counter()
            dump(pid, images)
            dumps.append(time.perf_counter() - t)
            os.waitpid(pid, 0)  # the dumped process, killed: ours to reap
            t = time.perf_counter()
            restore(images, restore_detached=True)  # the restored process is our child again
            restores.append(time.perf_counter() - t)
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        shutil.rmtree(images, ignore_errors=True)
    copy = memcpy_seconds(size)
    for name, times in (("dump", dumps), ("restore", restores)):
        cold, warm = times[0], min(times[1:]) if len(times) > 1 else times[0]
        print(f"{mib:>5} MiB  {name:<7} cold {cold:7.3f} s ({size / GIB / cold:5.2f} GiB/s)   "
              f"warm {warm:7.3f} s ({size / GIB / warm:5.2f} GiB/s)   "
              f"memcpy {copy:6.3f} s ({size / GIB / copy:5.2f} GiB/s)   "
              f"warm/memcpy {warm / copy:5.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: hiber needs ptrace")
    binary = build_target()
    print("hiber dump and restore, images on /dev/shm (CRIU 4.2 here, warm: dump 16 MiB "
          "~0.045 s, 1 GiB ~0.6 s; restore 16 MiB ~0.04 s, 1 GiB ~0.56 s)")
    for mib in (16, 1024):
        bench_size(binary, mib, args.runs)


if __name__ == "__main__":
    main()
