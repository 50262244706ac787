"""File locks with --file-locks: POSIX, OFD and flock locks, and sqlite's,
come back held by the restored processes, so others still cannot take them;
without the option the restore is refused, and a lock taken by someone else
meanwhile fails the restore in one line, leaving nothing behind."""

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import Target, dump, reap_orphans, restore, run_hiber

HOLDER = """
import fcntl, os, signal, struct, sys, time
d = sys.argv[1]
posix = open(d + "/posix", "w+"); posix.write("x" * 100); posix.flush()
fcntl.fcntl(posix, fcntl.F_SETLK, struct.pack("@hhqqi", fcntl.F_WRLCK, 0, 10, 10, 0))
fcntl.fcntl(posix, fcntl.F_SETLK, struct.pack("@hhqqi", fcntl.F_RDLCK, 0, 50, 0, 0))
shared = open(d + "/flock", "w")
fcntl.flock(shared, fcntl.LOCK_EX)
ofd = open(d + "/ofd", "w")
fcntl.fcntl(ofd, fcntl.F_OFD_SETLK, struct.pack("@hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
released = []
signal.signal(signal.SIGUSR1, lambda *a: released.append(1))
child = os.fork()
if child == 0:  # holds the flock'ed open file too
    while True:
        time.sleep(1)
print("READY", flush=True)
while not released:
    time.sleep(0.05)
fcntl.flock(shared, fcntl.LOCK_UN)
fcntl.fcntl(posix, fcntl.F_SETLK, struct.pack("@hhqqi", fcntl.F_UNLCK, 0, 0, 0, 0))
fcntl.fcntl(ofd, fcntl.F_OFD_SETLK, struct.pack("@hhqqi", fcntl.F_UNLCK, 0, 0, 0, 0))
os.kill(child, signal.SIGKILL); os.waitpid(child, 0)
open(d + "/released", "w").close()
time.sleep(60)
"""

# another process trying each lock without waiting: "held" or "free"
PROBE = """
import fcntl, struct, sys
d, what = sys.argv[1], sys.argv[2]
try:
    if what == "flock":
        fcntl.flock(open(d + "/flock"), fcntl.LOCK_EX | fcntl.LOCK_NB)
    elif what == "ofd":
        fcntl.fcntl(open(d + "/ofd", "w"), fcntl.F_OFD_SETLK,
                    struct.pack("@hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
    else:
        start, length, kind = {"posix-range": (12, 2, fcntl.F_RDLCK),
                               "posix-tail": (60, 1, fcntl.F_WRLCK),
                               "posix-tail-read": (60, 1, fcntl.F_RDLCK),
                               "posix-free": (30, 5, fcntl.F_WRLCK)}[what]
        fcntl.fcntl(open(d + "/posix", "r+"), fcntl.F_SETLK,
                    struct.pack("@hhqqi", kind, 0, start, length, 0))
    print("free")
except OSError:
    print("held")
"""


def _probe(d, what):
    return subprocess.run([sys.executable, "-c", PROBE, str(d), what], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=30).stdout.decode().strip()


EXPECTED = {"flock": "held", "ofd": "held", "posix-range": "held", "posix-tail": "held",
            "posix-tail-read": "free", "posix-free": "free"}


def _holder(tmp_path):
    t = Target(sys.executable, ["-c", HOLDER, tmp_path], tmp_path)
    t.wait_ready()
    return t


def test_locks_come_back_held(tmp_path):
    t = _holder(tmp_path)
    try:
        assert {w: _probe(tmp_path, w) for w in EXPECTED} == EXPECTED
        images = tmp_path / "images"
        dump(t, images, "--file-locks")
        assert _probe(tmp_path, "flock") == "free"  # the tree is gone, and its locks
        restore(images, "--file-locks")
        assert {w: _probe(tmp_path, w) for w in EXPECTED} == EXPECTED
        os.kill(t.pid, signal.SIGUSR1)  # the restored holder can let go of them all
        deadline = time.monotonic() + 10
        while not (tmp_path / "released").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_probe(tmp_path, w) == "free" for w in EXPECTED)
    finally:
        t.stop()


def test_images_with_locks_need_the_option(tmp_path):
    t = _holder(tmp_path)
    try:
        images = tmp_path / "images"
        dump(t, images, "--file-locks")
        result = run_hiber("restore", "-D", images, "-d")
        message = result.stderr.decode()
        assert result.returncode == 1 and message.count("\n") == 1, message
        assert "--file-locks" in message and not t.alive()
    finally:
        t.stop()


def test_a_lock_taken_meanwhile_fails_the_restore(tmp_path):
    t = _holder(tmp_path)
    try:
        images = tmp_path / "images"
        dump(t, images, "--file-locks")
        with open(tmp_path / "flock") as thief:
            fcntl.flock(thief, fcntl.LOCK_EX | fcntl.LOCK_NB)
            result = run_hiber("restore", "-D", images, "-d", "--file-locks")
        message = result.stderr.decode()
        assert result.returncode == 1 and message.count("\n") == 1, message
        assert "cannot take its lock" in message
        assert not t.alive()
        reap_orphans()
        restore(images, "--file-locks")  # once free, it comes back
        assert _probe(tmp_path, "flock") == "held"
    finally:
        t.stop()


SQLITE_WRITER = """
import signal, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
db.execute("CREATE TABLE IF NOT EXISTS t(x)")
db.execute("BEGIN EXCLUSIVE")
db.execute("INSERT INTO t VALUES (42)")
go = []
signal.signal(signal.SIGUSR1, lambda *a: go.append(1))
print("READY", flush=True)
while not go:
    time.sleep(0.05)
db.execute("COMMIT")
print("COMMITTED", flush=True)
time.sleep(60)
"""


def _read_rows(path):
    db = sqlite3.connect(path, timeout=0)
    try:
        return db.execute("SELECT x FROM t").fetchall()
    finally:
        db.close()


def test_sqlite_under_a_write_lock(tmp_path):
    path = str(tmp_path / "db")
    sqlite3.connect(path).close()
    t = Target(sys.executable, ["-c", SQLITE_WRITER, path], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images", "--file-locks")
        restore(tmp_path / "images", "--file-locks")
        try:
            _read_rows(path)
            raise AssertionError("another connection could read under the exclusive lock")
        except sqlite3.OperationalError as e:
            assert "locked" in str(e)
        os.kill(t.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "COMMITTED" not in t.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _read_rows(path) == [(42,)]
    finally:
        t.stop()


MAPPED_AND_LOCKED = """
import fcntl, mmap, sys, time
f = open(sys.argv[1], "r+b")
fcntl.lockf(f, fcntl.LOCK_EX)          # a POSIX lock ...
m = mmap.mmap(f.fileno(), 4096)        # ... on a file the process maps too
print("READY", flush=True)
time.sleep(60)
"""


def test_a_posix_lock_on_a_mapped_file_stays_held(tmp_path):
    # restoring the mapping opens the file once more and closes it in the
    # process: a POSIX lock taken before that would be dropped with it
    path = tmp_path / "mapped"
    path.write_bytes(b"m" * 4096)
    t = Target(sys.executable, ["-c", MAPPED_AND_LOCKED, path], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images", "--file-locks")
        restore(tmp_path / "images", "--file-locks")
        probe = ("import fcntl, sys\n"
                 "try:\n"
                 "    fcntl.lockf(open(sys.argv[1], 'r+b'), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                 "    print('free')\n"
                 "except OSError:\n"
                 "    print('held')\n")
        seen = subprocess.run([sys.executable, "-c", probe, path], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=30).stdout.decode().strip()
        assert seen == "held"
    finally:
        t.stop()
