"""inotify comes back with its watches, under their numbers, found again by
file handle; and `tail -f`, blocked waiting for inotify, carries on after a
restore (criu 4.2's restore makes it fail with EINTR)."""

import sys
import time

from conftest import Target, dump, restore, written

WATCHER = """
import ctypes, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1]
fd = libc.inotify_init1(0)
first = libc.inotify_add_watch(fd, (d + "/a").encode(), 0x2)          # IN_MODIFY
libc.inotify_add_watch(fd, (d + "/b").encode(), 0x2)
libc.inotify_rm_watch(fd, first)                                       # a gap in the numbers
third = libc.inotify_add_watch(fd, d.encode(), 0x100)                  # IN_CREATE
print("READY", f"third={third}", flush=True)
events = []
while len(events) < 3:
    data = os.read(fd, 4096)
    off = 0
    while off < len(data):
        wd, mask, cookie, length = struct.unpack_from("iIII", data, off)
        name = data[off + 16:off + 16 + length].rstrip(b"\\0").decode()
        events.append(f"{wd}:{mask:x}:{name}")
        off += 16 + length
open(d + "/events", "w").write(" ".join(events))
time.sleep(60)
"""


def test_inotify_watches_come_back(tmp_path):
    d = tmp_path / "watched"
    d.mkdir()
    (d / "a").write_text("a")
    (d / "b").write_text("b")
    t = Target(sys.executable, ["-c", WATCHER, d], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        time.sleep(0.2)
        with open(d / "b", "a") as f:
            f.write("more")             # watch 2, IN_MODIFY
        (d / "new").write_text("x")     # watch 3, IN_CREATE "new"
        written(d / "events")
        # the first, read before the dump: the removal of watch 1 (IN_IGNORED);
        # none from the restore's own remaking of the watches
        assert (d / "events").read_text() == "1:8000: 2:2: 3:100:new"
    finally:
        t.stop()


def test_tail_follows_on(tmp_path):
    log = tmp_path / "log"
    log.write_text("one\n")
    t = Target("/usr/bin/tail", ["-n", "+1", "-f", log], tmp_path)
    try:
        deadline = time.monotonic() + 10
        while "one" not in t.output() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # in its wait for inotify events
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        for word in ("two", "three"):
            with open(log, "a") as f:
                f.write(word + "\n")
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while "three" not in t.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert t.output().split() == ["one", "two", "three"], t.output()
        assert t.alive()
    finally:
        t.stop()


FANOTIFY_GROUP = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
f = sys.argv[1]
fd = libc.fanotify_init(0x10, os.O_RDONLY)     # FAN_UNLIMITED_QUEUE, FAN_CLASS_NOTIF
libc.fanotify_mark(fd, 1, ctypes.c_uint64(0x2 | 0x8), -100, f.encode())            # inode
libc.fanotify_mark(fd, 0x11, ctypes.c_uint64(0x20), -100, os.path.dirname(f).encode())  # mount
libc.fanotify_mark(fd, 0x31, ctypes.c_uint64(0x1), -100, os.path.dirname(f).encode())   # ignored
print("READY", f"fd={fd}", flush=True)
time.sleep(60)
"""


def _marks(pid, fd):
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        return sorted(line for line in f.read().splitlines() if line.startswith("fanotify"))


def test_fanotify_marks_come_back(tmp_path):
    watched = tmp_path / "watched"
    watched.write_text("x")
    t = Target(sys.executable, ["-c", FANOTIFY_GROUP, watched], tmp_path)
    try:
        info = t.wait_ready()
        before = _marks(t.pid, info["fd"])
        assert len(before) == 3  # the group, a mount mark, an inode mark
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        assert _marks(t.pid, info["fd"]) == before
    finally:
        t.stop()
