"""hiber dump against real processes: images checked with hiber and crit,
compared with what /proc and the target itself say."""

import json
import os
import signal
import struct
import subprocess
import time

import pytest

from conftest import run_hiber
from hiber.images import vma as V
from hiber.images.framing import read_image
from hiber.images.imagedir import ImageDir
from hiber.images.pagemap import PAGE_SIZE
from hiber.inject.freeze import freeze_tree
from hiber.kernel import proc
from hiber.kernel import ptrace as pt

SIGRTMIN = signal.SIGRTMIN
O_APPEND = 0o2000


def dump_cli(pid, images, *extra, env=None):
    return run_hiber("dump", "-t", pid, "-D", images, "-o", "dump.log", *extra, env=env)


def crit_decodes(images):
    """Every image file of a dir decodes with Debian's crit."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    for f in sorted(os.listdir(images)):
        if f.startswith("pages-") or f.endswith(".log"):
            continue
        out = subprocess.run(["crit", "decode", "-i", os.path.join(images, f)],
                             capture_output=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, f"crit cannot decode {f}: {out.stderr.decode()}"


def page_bytes(d, pid, address, size):
    """Bytes at address..address+size from the dumped pages of pid."""
    pm = d.pagemap(pid)
    reader = d.pages_reader(pm)
    for run in pm.runs:
        if run.present and run.vaddr <= address and address + size <= run.end:
            data = reader.read(run)
            return data[address - run.vaddr:address - run.vaddr + size]
    return None


def sigaction_index(sig):
    """Where signal sig sits among the 62 sigactions (no SIGKILL, no SIGSTOP)."""
    return sig - 1 - (sig > signal.SIGKILL) - (sig > signal.SIGSTOP)


def pattern(n, salt, start=0):
    return bytes(((i * 31 + salt) & 0xff) for i in range(start, start + n))


@pytest.fixture
def state_target(start_target, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return start_target("state", work)


def snapshot(pid):
    return {"maps": proc.read_text(pid, "maps"),
            "sigblk": [proc.status(pid, t)["SigBlk"] for t in proc.thread_ids(pid)],
            "fds": {fd: (proc.fd_link(pid, fd), proc.fdinfo(pid, fd)["pos"])
                    for fd in proc.fds(pid)}}


def registers(pid):
    """Registers of every thread, read by a freeze of our own."""
    tree = freeze_tree(pid)
    try:
        return {tid: list(pt.get_regs(tid)) for tid in tree.all_threads()}
    finally:
        tree.thaw()


def test_dump_state_target(state_target, tmp_path):
    t = state_target
    images = tmp_path / "images"
    maps_before = proc.maps(t.pid)
    fds_before = proc.fds(t.pid)
    result = dump_cli(t.pid, images, "-R")
    assert result.returncode == 0, result.stderr.decode()
    assert (images / "dump.log").read_text().splitlines()[-1].endswith(
        "Dumping finished successfully")

    crit_decodes(images)
    for f in os.listdir(images):
        if not f.startswith("pages-") and not f.endswith(".log"):
            run_hiber("decode", "-i", images / f, check=True)
    d = ImageDir(images)
    pid = t.pid
    assert [p.pid for p in d.read("PSTREE")] == [pid]
    threads = d.read("PSTREE")[0].threads
    assert threads[0] == pid and len(threads) == 2

    # VMAs: the same ranges and protections as /proc showed
    mm = d.read_one("MM", pid)
    real = [v for v in mm.vmas if not v.status & V.VMA_AREA_GUARD]
    expected = []
    for m in maps_before:
        if m.path == "[vvar_vclock]":
            expected[-1] = (expected[-1][0], m.end, expected[-1][2])  # merged into vvar
            continue
        expected.append((m.start, m.end, m.prot))
    assert [(v.start, v.end, v.prot) for v in real] == expected
    by_start = {v.start: v for v in mm.vmas}
    guard = [v for v in mm.vmas if v.status & V.VMA_AREA_GUARD]
    assert [(g.start, g.end) for g in guard] == [(t.address("anon") + 5 * PAGE_SIZE,
                                                  t.address("anon") + 6 * PAGE_SIZE)]
    assert mm.vmas[-1].status == V.VMA_AREA_GUARD  # appended after the real ones

    # pages: contents, and what must not be there
    anon = t.address("anon")
    assert page_bytes(d, pid, anon, PAGE_SIZE) == pattern(PAGE_SIZE, 7)
    assert page_bytes(d, pid, anon + 5 * PAGE_SIZE, PAGE_SIZE) is None  # the guard page
    assert page_bytes(d, pid, t.address("ro"), 2 * PAGE_SIZE) == pattern(2 * PAGE_SIZE, 11)
    assert page_bytes(d, pid, t.address("none"), PAGE_SIZE) is None
    fpriv = t.address("fpriv")
    assert page_bytes(d, pid, fpriv, PAGE_SIZE) is None  # not COWed: stays in the file
    cowed = page_bytes(d, pid, fpriv + PAGE_SIZE, PAGE_SIZE)
    assert cowed[1] == 0xAB and cowed[2:8] == pattern(6, 3, PAGE_SIZE + 2)
    vdso = next(v for v in mm.vmas if v.status & V.VMA_AREA_VDSO)
    assert page_bytes(d, pid, vdso.start, 4) == b"\x7fELF"
    vvar = next(v for v in mm.vmas if v.status & V.VMA_AREA_VVAR)
    assert page_bytes(d, pid, vvar.start, PAGE_SIZE) is None and vvar.madv == 0x10000
    assert vvar.end == vdso.start
    assert any(v.status == V.VMA_AREA_VSYSCALL | V.VMA_ANON_PRIVATE for v in mm.vmas)
    assert by_start[t.address("shanon")].status == 0x4081
    assert by_start[t.address("memfd")].status == 0x4081
    assert by_start[t.address("fshared")].status == V.VMA_AREA_REGULAR | V.VMA_FILE_SHARED

    files = {f.id: f for f in d.read("FILES")}
    memfds = {e.inode_id: e for e in d.read("MEMFD_INODE")}
    assert sorted(e.name for e in memfds.values()) == ["/dev/zero", "memfd:state-memfd"]
    for key in d.keys("SHMEM_PAGEMAP"):
        d.pages_reader(d.pagemap(key, shmem=True))
    assert files[by_start[t.address("fshared")].shmid].reg.name.endswith("/work/data.bin")
    assert files[mm.exe_file_id].reg.name.endswith("/state")

    # registers: both threads sit in restartable syscalls, stored after the
    # restart fixup: ax = orig_ax = the syscall, ip on the syscall instruction
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for tid, nr in ((threads[0], 34), (threads[1], 0)):  # pause, read
            core = d.read_one("CORE", tid)
            regs = core.thread_info.gpregs
            assert (regs.orig_ax, regs.ax) == (nr, nr), tid
            mem.seek(regs.ip)
            assert mem.read(2) == b"\x0f\x05"
            assert core.thread_info.fpregs.mxcsr == 0x1f80
            assert len(core.thread_info.fpregs.st_space) == 32
            assert core.thread_core.rseq_entry.signature == 0x53053053
            assert [tls.entry_number for tls in core.thread_info.tls] == [12, 13, 14]
    leader = d.read_one("CORE", pid)
    assert not d.read_one("CORE", threads[1]).HasField("tc")

    # signals, timers, limits, creds
    tc = leader.tc
    usr2, rt5 = 1 << (signal.SIGUSR2 - 1), 1 << (SIGRTMIN + 5 - 1)
    assert tc.blk_sigset & usr2 and tc.blk_sigset & rt5
    assert len(tc.sigactions) == 62
    usr1 = tc.sigactions[sigaction_index(signal.SIGUSR1)]
    assert usr1.sigaction and usr1.flags & 0x10000000 and usr1.mask == 1 << (signal.SIGINT - 1)
    private = [struct.unpack_from("<i", s.siginfo)[0] for s in leader.thread_core.signals_p.signals]
    shared = [s.siginfo for s in tc.signals_s.signals]
    assert private == [signal.SIGUSR2]
    assert [struct.unpack_from("<i", s)[0] for s in shared] == [signal.SIGTRAP, SIGRTMIN + 5]
    assert struct.unpack_from("<i", shared[1], 24)[0] == 42  # si_value
    assert tc.timers.real.isec == 100 and 0 < tc.timers.real.vsec <= 100
    (posix,) = tc.timers.posix
    assert (posix.clock_id, posix.si_signo, posix.isec) == (1, SIGRTMIN + 3, 50)
    assert len(tc.rlimits.rlimits) == 16
    nofile = tc.rlimits.rlimits[7]
    assert (nofile.cur, nofile.max) == (512, 1024)
    assert leader.thread_core.sas.ss_size == 65536
    assert leader.thread_core.creds.uid == 0 and len(leader.thread_core.creds.cap_eff) == 2
    assert tc.comm == "state" and tc.task_state == 1

    # files
    fs = d.read_one("FS", pid)
    assert fs.umask == 0o027 and files[fs.cwd_id].reg.name.endswith("/work/sub")
    ids = d.read_one("IDS", pid)
    fdinfo = {e.fd: e for e in d.read("FDINFO", ids.files_id)}
    assert sorted(fdinfo) == fds_before
    pos = files[fdinfo[int(t.info["pos_fd"])].id].reg
    assert pos.pos == 5 and pos.size == 10
    assert files[fdinfo[int(t.info["append_fd"])].id].reg.flags & O_APPEND
    assert files[fdinfo[int(t.info["null_fd"])].id].reg.name == "/dev/null"
    assert [e.extra for e in d.read_entries("PIPES_DATA") if e.extra] == [b"pipe-data"]
    (fifo,) = d.read_entries("FIFO_DATA")
    assert fifo.extra == b"fifo-data"

    # stats agree with the pages files
    stats = read_image(images / "stats-dump").entries[0].message.dump
    pages_bytes = sum(os.path.getsize(images / f) for f in os.listdir(images)
                      if f.startswith("pages-"))
    assert (stats.pages_written + stats.shpages_written) * PAGE_SIZE == pages_bytes
    assert stats.shpages_written > 0 and stats.frozen_time > 0
    assert not d.inventory().HasField("allow_uprobes")
    t.check()  # the dump left the target exactly as it was


def test_dump_kills_the_tree_by_default(start_target, tmp_path):
    t = start_target("simple")
    result = dump_cli(t.pid, tmp_path / "images")
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -signal.SIGKILL
    assert ImageDir(tmp_path / "images").inventory().img_version == 2


@pytest.mark.parametrize("phase", ["frozen", "inject", "memory", "files", "pages", "written"])
def test_failed_dump_leaves_the_target_as_it_was(state_target, tmp_path, phase):
    t = state_target
    before, regs_before = snapshot(t.pid), registers(t.pid)
    result = dump_cli(t.pid, tmp_path / "images", env={"HIBER_FAULT": phase})
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1 and phase.encode() in result.stderr
    log = (tmp_path / "images" / "dump.log").read_text()
    assert "Dumping FAILED" in log.splitlines()[-1]
    assert snapshot(t.pid) == before  # no scratch mapping, same masks and fds
    assert registers(t.pid) == regs_before
    assert proc.status(t.pid)["TracerPid"] == "0"
    t.check()  # memory, signals, timers, files: the target checks itself


def test_unforeseen_error_is_one_line_pointing_to_the_traceback(state_target, tmp_path):
    """A bug is no excuse for a traceback on the terminal, nor for harm."""
    t = state_target
    images = tmp_path / "images"
    result = dump_cli(t.pid, images, env={"HIBER_FAULT": "bug:memory"})
    message = result.stderr.decode()
    assert result.returncode == 1 and message.count("\n") == 1, message
    assert "failed unexpectedly (RuntimeError: bug injected at phase 'memory'" in message
    assert f"the traceback is in {images / 'dump.log'}" in message, message
    log = (images / "dump.log").read_text()
    assert "Traceback" in log and "Dumping FAILED" in log
    assert proc.status(t.pid)["TracerPid"] == "0"
    t.check()


def test_stopped_process_stays_stopped(start_target, tmp_path):
    t = start_target("simple")
    os.kill(t.pid, signal.SIGSTOP)
    while proc.stat(t.pid).state != "T":
        time.sleep(0.001)
    result = dump_cli(t.pid, tmp_path / "images", "-R")
    assert result.returncode == 0, result.stderr.decode()
    tc = ImageDir(tmp_path / "images").read_one("CORE", t.pid).tc
    assert tc.task_state == 3 and tc.stop_signo == signal.SIGSTOP
    decoded = json.loads(run_hiber("decode", "--pretty", "-i",
                                   tmp_path / "images" / f"core-{t.pid}.img").stdout)
    assert decoded["entries"][0]["tc"]["task_state"] == "Stopped"
    assert proc.stat(t.pid).state == "T"
    os.kill(t.pid, signal.SIGCONT)
    t.check()


@pytest.mark.parametrize("kind,words", [("socket", "socket"),
                                        ("userfaultfd", "userfaultfd")])
def test_unsupported_fd_fails_with_pid_fd_and_kind(start_target, tmp_path, kind, words):
    t = start_target("simple", kind)
    fd = t.info["fd"]
    result = dump_cli(t.pid, tmp_path / "images")
    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"PID {t.pid} fd {fd}" in message and words in message
    assert message.count("\n") == 1
    t.check()


def test_unsupported_mapping_fails_with_pid_range_and_kind(start_target, tmp_path):
    t = start_target("simple", "io_uring")
    ring = next(m for m in proc.maps(t.pid) if "io_uring" in m.path)
    result = dump_cli(t.pid, tmp_path / "images")
    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"PID {t.pid}: mapping {ring.start:x}-{ring.end:x}" in message
    assert "anon_inode:[io_uring]" in message and message.count("\n") == 1
    t.check()


def test_dump_of_a_missing_pid_fails_in_one_line(tmp_path):
    result = dump_cli(4194304 - 1, tmp_path / "images")
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1
    assert b"does not exist" in result.stderr
    assert "does not exist" in (tmp_path / "images" / "dump.log").read_text()


def test_dump_option_errors_are_one_line(tmp_path):
    result = run_hiber("dump", "-t", "1", "-D", tmp_path, "--lazy-pages")
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1
    assert b"--port" in result.stderr  # lazy pages are served on a port
    result = run_hiber("dump", "-D", tmp_path)
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1


# ---- uprobes: refused without --allow-uprobes, skipped with it -------------

def test_dump_with_a_uprobe(start_target, tmp_path):
    from conftest import TARGETS_BIN
    from uprobes import TracefsUprobe, wait_for_uprobes_mapping

    t = start_target("probed")
    with TracefsUprobe(TARGETS_BIN / "probed", "probed_function", f"p{t.pid}") as probe:
        wait_for_uprobes_mapping(t.pid)
        maps_before = proc.read_text(t.pid, "maps")

        result = dump_cli(t.pid, tmp_path / "refused")
        assert result.returncode == 1
        assert result.stderr.decode() == (
            f"hiber: PID {t.pid} has a [uprobes] mapping: check which uprobes are attached "
            "to it and re-run with --allow-uprobes\n")
        assert not (tmp_path / "refused" / "inventory.img").exists()
        assert not [f for f in os.listdir(tmp_path / "refused") if f.endswith(".img")]
        # it runs on, unharmed, and keeps hitting its probe
        hits = probe.hits()
        time.sleep(0.1)
        assert probe.hits() > hits
        assert proc.read_text(t.pid, "maps") == maps_before

        result = dump_cli(t.pid, tmp_path / "allowed", "-R", "--allow-uprobes")
        assert result.returncode == 0, result.stderr.decode()
        d = ImageDir(tmp_path / "allowed")
        assert d.inventory().allow_uprobes is True
        vmas = d.read_one("MM", t.pid).vmas
        assert not any(v.start == 0x7fffffffe000 for v in vmas)
        assert not any(v.status & V.VMA_AREA_UPROBES for v in vmas)
        decoded = json.loads(run_hiber("decode", "--pretty", "-i",
                                       tmp_path / "allowed" / "inventory.img").stdout)
        assert decoded["entries"][0]["allow_uprobes"] is True
        hits = probe.hits()
        time.sleep(0.1)
        assert probe.hits() > hits
    t.check()


def test_dump_of_a_process_tree(start_target, tmp_path):
    t = start_target("tree")
    a, b = int(t.info["a"]), int(t.info["b"])
    (grandchild,) = proc.children(a, a)
    result = dump_cli(t.pid, tmp_path / "images")
    assert result.returncode == 0, result.stderr.decode()
    d = ImageDir(tmp_path / "images")
    tree = [(p.pid, p.ppid, p.pgid) for p in d.read("PSTREE")]
    root_pgid = tree[0][2]
    # parents before children, depth first, the root first with ppid 0
    assert tree == [(t.pid, 0, root_pgid), (a, t.pid, root_pgid), (grandchild, a, root_pgid),
                    (b, t.pid, b)]
    ids = [d.read_one("IDS", pid) for pid, _, _ in tree]
    assert len({i.vm_id for i in ids}) == 4 and len({i.files_id for i in ids}) == 4
    assert all(i.vm_id >= 2 for i in ids)  # id 1 is hiber's own (inventory root_ids)
    assert d.inventory().root_ids.vm_id == 1
    assert [d.read_one("MM", pid).exe_file_id for pid, _, _ in tree].count(
        d.read_one("MM", t.pid).exe_file_id) == 4  # one file entry for the shared exe
    assert sorted(d.keys("PAGEMAP")) == sorted(pid for pid, _, _ in tree)
    assert len(d.keys("PAGES")) == 4
    # dumped and killed, all of them
    assert t.wait(10) == -signal.SIGKILL
    for pid in (a, b, grandchild):
        deadline = time.monotonic() + 10
        while proc.exists(pid) and not proc.is_zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not proc.exists(pid) or proc.is_zombie(pid)


def test_leave_stopped(start_target, tmp_path):
    t = start_target("simple")
    result = dump_cli(t.pid, tmp_path / "images", "-s")
    assert result.returncode == 0, result.stderr.decode()
    assert proc.stat(t.pid).state == "T" and proc.status(t.pid)["TracerPid"] == "0"
    os.kill(t.pid, signal.SIGCONT)
    t.check()
