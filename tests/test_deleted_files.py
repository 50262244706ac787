"""Files deleted while the tree holds them come back as CRIU 4.2 keeps them:
as ghosts (their contents in the images, sparse files kept sparse) or, when
still linked elsewhere, through a link the dump makes; opened, mapped and
as the cwd. Nothing is left on disk after a restore, or after a failed one;
--ghost-limit refuses a larger one in one line."""

import os
import signal
import sys
import time

from conftest import Target, dump, reap_orphans, restore, run_hiber, written

HOLDER = """
import mmap, os, signal, sys, time
d = sys.argv[1]
report = sys.argv[2]
# a deleted file, open read-write at a position, shared by two fds
f = open(d + "/plain", "w+b"); f.write(b"hello world"); f.flush(); f.seek(6)
g = os.dup(f.fileno())
os.chmod(d + "/plain", 0o640)
os.unlink(d + "/plain")
# a sparse one, larger than 12 KiB (written in chunks), mapped shared and written through
s = open(d + "/sparse", "w+b"); s.truncate(1 << 20); s.seek(0); s.write(b"head")
s.seek(700 * 1024); s.write(b"middle"); s.flush()
shared = mmap.mmap(s.fileno(), 1 << 20, mmap.MAP_SHARED)
os.unlink(d + "/sparse")
# mapped private, with a page written that the file does not have
p = open(d + "/private", "w+b"); p.write(b"P" * 8192); p.flush()
private = mmap.mmap(p.fileno(), 8192, mmap.MAP_PRIVATE)
private[0:4] = b"mine"
os.unlink(d + "/private"); p.close()
# still linked elsewhere: renamed into a directory that then goes
os.mkdir(d + "/sub"); os.mkdir(d + "/keep")
k = open(d + "/sub/kept", "w"); k.write("kept"); k.flush()
os.link(d + "/sub/kept", d + "/keep/other-name")
os.unlink(d + "/sub/kept")
# a deleted directory as the cwd
os.mkdir(d + "/gone"); os.chdir(d + "/gone"); os.rmdir(d + "/gone")
go = []
signal.signal(signal.SIGUSR1, lambda *a: go.append(1))
print("READY", flush=True)
while not go:
    time.sleep(0.05)
out = []
f.seek(0, 1); out.append(f.tell() == 6)
os.lseek(g, 0, 0); out.append(os.read(g, 11) == b"hello world")
out.append(os.fstat(f.fileno()).st_mode & 0o777 == 0o640 and os.fstat(f.fileno()).st_nlink == 0)
out.append(shared[0:4] == b"head" and shared[700 * 1024:700 * 1024 + 6] == b"middle")
shared[8:12] = b"more"; shared.flush()
out.append(os.pread(s.fileno(), 4, 8) == b"more")                    # the same file
out.append(os.lseek(s.fileno(), 4096, os.SEEK_DATA) >= 700 * 1024)  # still sparse
out.append(private[0:6] == b"mineP" + b"P"[0:1] and private[4096] == ord("P"))
out.append(open("/proc/self/fd/%d" % k.fileno()).read() == "kept")
out.append(os.readlink("/proc/self/cwd").endswith("/gone (deleted)") and os.stat(".").st_nlink == 0)
open(report, "w").write(" ".join(map(str, out)))
time.sleep(60)
"""


def _leftovers(d):
    return [os.path.join(root, n) for root, dirs, names in os.walk(d)
            for n in names + dirs if ".cr." in n or n.startswith("link_remap.")]


def _holder(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    t = Target(sys.executable, ["-c", HOLDER, d, tmp_path / "report"], tmp_path)
    t.wait_ready()
    return t, d


def test_deleted_files_come_back(tmp_path):
    t, d = _holder(tmp_path)
    try:
        dump(t, tmp_path / "images")
        names = os.listdir(tmp_path / "images")
        assert "remap-fpath.img" in names and any(n.startswith("ghost-file-") for n in names)
        restore(tmp_path / "images")
        assert _leftovers(d) == []
        os.kill(t.pid, signal.SIGUSR1)
        assert written(tmp_path / "report") == " ".join(["True"] * 9)
    finally:
        t.stop()


def test_a_failed_restore_leaves_no_ghost(tmp_path):
    t, d = _holder(tmp_path)
    try:
        dump(t, tmp_path / "images")
        result = run_hiber("restore", "-D", tmp_path / "images", "-d",
                           env={"HIBER_FAULT": "rebuild"})
        assert result.returncode == 1 and not t.alive()
        reap_orphans()
        assert _leftovers(d) == []
    finally:
        t.stop()


def test_the_ghost_limit(tmp_path):
    t, d = _holder(tmp_path)
    try:
        result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "--ghost-limit", "4K")
        message = result.stderr.decode()
        assert result.returncode == 1 and message.count("\n") == 1, message
        assert "--ghost-limit" in message and t.alive()
        assert not (d / "keep").exists() or _leftovers(d) == []  # no link left by the dump
    finally:
        t.stop()


QUEUE_PAIR = """
import multiprocessing as mp, sys, time
def producer(q):
    n = 0
    while True:
        q.put(n)
        n += 1
        time.sleep(0.02)
if __name__ == "__main__":
    mp.set_start_method("fork")
    q = mp.Queue()   # a pipe, and POSIX semaphores: deleted files in /dev/shm
    p = mp.Process(target=producer, args=(q,), daemon=True)
    p.start()
    print("READY", flush=True)
    last = -1
    while True:
        n = q.get(timeout=30)
        assert n == last + 1, (last, n)
        last = n
        open(sys.argv[1], "w").write(str(n))
"""


def test_processes_exchanging_through_a_multiprocessing_queue(tmp_path):
    seen = tmp_path / "seen"
    t = Target(sys.executable, ["-c", QUEUE_PAIR, seen], tmp_path)
    try:
        t.wait_ready()
        while not seen.exists() or int(seen.read_text() or 0) < 5:
            time.sleep(0.02)
        dump(t, tmp_path / "images")
        before = int(seen.read_text())
        restore(tmp_path / "images")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and int(seen.read_text() or 0) < before + 20:
            time.sleep(0.05)
        assert int(seen.read_text()) >= before + 20, t.output()  # in order, none lost
        assert t.alive()
    finally:
        t.stop()


FIFO_AND_LINK = """
import os, sys, time
d = sys.argv[1]
os.mkfifo(d + "/fifo")
r = os.open(d + "/fifo", os.O_RDONLY | os.O_NONBLOCK)
w = os.open(d + "/fifo", os.O_WRONLY)
os.write(w, b"queued")
os.unlink(d + "/fifo")                      # a deleted FIFO, with data in it
os.symlink("target-of-link", d + "/link")
p = os.open(d + "/link", os.O_PATH | os.O_NOFOLLOW)
os.unlink(d + "/link")                      # a deleted symlink, held O_PATH
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
ok = os.read(r, 100) == b"queued"
os.write(w, b"more"); ok = ok and os.read(r, 100) == b"more"
import ctypes
buf = ctypes.create_string_buffer(100)
n = ctypes.CDLL(None).readlinkat(p, b"", buf, 100)
ok = ok and buf.raw[:n] == b"target-of-link"
open(sys.argv[2], "w").write(str(ok))
time.sleep(60)
"""


def test_a_deleted_fifo_and_symlink(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    code = FIFO_AND_LINK
    t = Target(sys.executable, ["-c", code, d, tmp_path / "report"], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        assert os.listdir(d) == []
        os.kill(t.pid, signal.SIGUSR1)
        assert written(tmp_path / "report") == "True"
    finally:
        t.stop()
