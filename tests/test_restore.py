"""hiber restore: targets are checkpointed (and killed), restored, then asked
to verify their own state."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import (REPO, Target, checkpoint_restore, dump, restore, restore_refused,
                      run_hiber)
from hiber.images.imagedir import ImageDir
from hiber.images import vma as V
from hiber.kernel import proc


@pytest.fixture
def work(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.mark.parametrize("threads", ["nothread", "threaded"])
def test_state_survives(start_target, work, tmp_path, threads):
    t = start_target("state", work, threads)
    checkpoint_restore(t, tmp_path / "images")
    # it is reparented to the tests (child subreaper), not left under hiber
    assert proc.stat(t.pid).ppid == os.getpid()
    t.check()


def test_registers_and_vector_state(start_target, tmp_path):
    t = start_target("regs")
    checkpoint_restore(t, tmp_path / "images")
    t.check()


def test_threads_blocked_in_syscalls_resume(start_target, tmp_path):
    t = start_target("blocked")
    tids = sorted(int(t.info[k]) for k in ("reader", "sleeper", "pauser", "futex"))
    checkpoint_restore(t, tmp_path / "images")
    assert sorted(proc.thread_ids(t.pid)) == sorted([t.pid, *tids])
    t.check(timeout=30)


def test_timers_keep_firing(start_target, tmp_path):
    t = start_target("timers")
    checkpoint_restore(t, tmp_path / "images")
    timers = proc.read_text(t.pid, "timers")
    assert f"ID: {t.info['timer']}" in timers
    t.check()


@pytest.mark.timeout(240)
def test_large_memory_checksum(start_target, tmp_path):
    t = start_target("bigsum")
    checkpoint_restore(t, tmp_path / "images")
    t.check(timeout=60)


def restore_attached(t, images, pidfile, send):
    """hiber restore without -d: once the pidfile names the process, send it
    a signal; return hiber's exit code."""
    hiber = subprocess.Popen([sys.executable, "-m", "hiber", "restore", "-D", str(images),
                              "--pidfile", str(pidfile)], cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pidfile.read_text() == str(t.pid)  # no newline, as criu writes it
        os.kill(t.pid, send)
        return hiber.wait(30)
    finally:
        hiber.kill()
        hiber.wait()


def test_exit_code_is_forwarded_when_not_detached(start_target, tmp_path):
    t = start_target("simple", "exit42")
    dump(t, tmp_path / "images")
    assert restore_attached(t, tmp_path / "images", tmp_path / "pid", signal.SIGRTMIN + 1) == 42
    assert "PASS" in t.output()


def test_killed_root_gives_128_plus_signal(start_target, tmp_path):
    t = start_target("simple")
    dump(t, tmp_path / "images")
    code = restore_attached(t, tmp_path / "images", tmp_path / "pid", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM


def test_dump_restore_dump_restore(start_target, work, tmp_path):
    """The second dump sees nothing of hiber's machinery in the process."""
    t = start_target("state", work, "nothread")
    first = tmp_path / "first"
    second = tmp_path / "second"
    checkpoint_restore(t, first)
    checkpoint_restore(t, second)
    a, b = ImageDir(first), ImageDir(second)

    def layout(d):
        return [(v.start, v.end, v.prot, v.flags, v.status & ~V.VMA_AREA_MEMFD)
                for v in d.read_one("MM", t.pid).vmas]

    assert layout(a) == layout(b)
    fds = [(e.fd, e.type, e.flags) for e in a.read("FDINFO", a.read_one("IDS", t.pid).files_id)]
    assert fds == [(e.fd, e.type, e.flags)
                   for e in b.read("FDINFO", b.read_one("IDS", t.pid).files_id)]
    assert a.pagemap(t.pid).present_pages == b.pagemap(t.pid).present_pages
    t.check()


# ---- refusals: one line, exit code 1, no process created --------------------

def test_refuses_a_pid_in_use(start_target, tmp_path):
    t = start_target("simple")
    images = tmp_path / "images"
    dump(t, images, "-R")
    restore_refused(images, f"PID {t.pid} is already in use")
    t.check()


def test_refuses_a_mapped_file_that_changed_size(start_target, work, tmp_path):
    t = start_target("state", work, "nothread")
    images = tmp_path / "images"
    dump(t, images)
    with open(work / "data.bin", "ab") as f:
        f.write(b"more")
    restore_refused(images, "data.bin changed size since the dump")
    assert not proc.exists(t.pid)


def test_refuses_uprobes_images_without_the_option(start_target, tmp_path):
    t = start_target("simple")
    images = tmp_path / "images"
    dump(t, images)
    inventory = ImageDir(images).inventory()
    inventory.allow_uprobes = True
    ImageDir(images).write("INVENTORY", None, [inventory])
    message = restore_refused(images, "")
    assert message == ("hiber: Images were dumped with --allow-uprobes: make sure the same "
                       "uprobes are active, then restore with --allow-uprobes\n")
    assert not proc.exists(t.pid)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_refuses_a_damaged_image(start_target, tmp_path, damage):
    t = start_target("simple")
    images = tmp_path / "images"
    dump(t, images)
    mm = images / f"mm-{t.pid}.img"
    data = mm.read_bytes()
    mm.write_bytes(data[:len(data) // 2] if damage == "truncate"
                   else data[:12] + b"\xff" * (len(data) - 12))
    restore_refused(images, f"mm-{t.pid}.img")
    assert not proc.exists(t.pid)


def test_failed_restore_leaves_nothing_behind(start_target, work, tmp_path):
    """A failure after the stub exists (injected while its memory is being
    rebuilt) must kill and reap it."""
    t = start_target("state", work, "nothread")
    images = tmp_path / "images"
    dump(t, images)
    result = run_hiber("restore", "-D", images, "-d", env={"HIBER_FAULT": "rebuild"})
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1
    assert not proc.exists(t.pid), "a half-made process was left behind"
    restore(images)  # and the images are still good
    t.check()


def test_shell_job_gets_hibers_terminal(tmp_path):
    """A job of a shell (not a session leader, fds on a terminal) needs -j to
    be dumped; restored with -j it joins hiber's session and group, and its
    terminal fds point to the terminal hiber runs on."""
    import pty
    from conftest import CHECK_SIGNAL, build_target
    binary = build_target("simple")
    old_master, old_tty = pty.openpty()
    new_master, new_tty = pty.openpty()
    job = subprocess.Popen([str(binary)], stdin=old_tty, stdout=old_tty, stderr=old_tty)
    pid = job.pid
    try:
        deadline = time.monotonic() + 10
        seen = b""
        while b"READY" not in seen and time.monotonic() < deadline:
            seen += os.read(old_master, 4096)
        images = tmp_path / "images"
        result = run_hiber("dump", "-t", pid, "-D", images)
        assert result.returncode == 1 and b"--shell-job" in result.stderr
        result = run_hiber("dump", "-t", pid, "-D", images, "-j")
        assert result.returncode == 0, result.stderr.decode()
        job.wait(10)
        result = subprocess.run([sys.executable, "-m", "hiber", "restore", "-D", str(images),
                                 "-d", "-j"], cwd=REPO, stdin=new_tty, capture_output=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        assert os.readlink(f"/proc/{pid}/fd/0") == os.ttyname(new_tty)
        s = proc.stat(pid)
        assert (s.session, s.pgrp) == (os.getsid(0), os.getpgrp())
        os.kill(pid, CHECK_SIGNAL)
        deadline = time.monotonic() + 10
        said = b""
        while b"PASS" not in said and time.monotonic() < deadline:
            said += os.read(new_master, 4096)
        assert b"PASS" in said
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        for fd in (old_master, old_tty, new_master, new_tty):
            os.close(fd)


def test_refuses_a_program_rebuilt_to_the_same_size(tmp_path):
    """The size alone would let a different build of the program through."""
    source = pathlib.Path(__file__).parent / "targets" / "simple.c"
    builds = {}
    for tag in ("1111", "2222"):
        builds[tag] = tmp_path / f"simple-{tag}"
        subprocess.run(["gcc", "-O1", "-I", str(source.parent), "-o", str(builds[tag]),
                        str(source), f"-Wl,--build-id=0x{tag * 8}"], check=True,
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert builds["1111"].stat().st_size == builds["2222"].stat().st_size
    program = tmp_path / "simple"
    shutil.copy(builds["1111"], program)
    t = Target(program, (), tmp_path)
    try:
        t.wait_ready()
        images = tmp_path / "images"
        dump(t, images)
        program.unlink()  # a text file busy until the process is gone
        shutil.copy(builds["2222"], program)
        restore_refused(images, "simple is not the ELF file of the dump (its build-id differs)")
        assert not proc.exists(t.pid)
        program.unlink()
        shutil.copy(builds["1111"], program)
        restore(images)
        t.check()
    finally:
        t.stop()


def test_chrooted_process_keeps_its_root_and_cwd(start_target, tmp_path):
    jail = tmp_path / "jail"
    (jail / "inside").mkdir(parents=True)
    (jail / "marker").write_text("here")
    t = start_target("chrooted", jail)
    checkpoint_restore(t, tmp_path / "images")
    t.check()
