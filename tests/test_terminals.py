"""Terminals (resources/files/terminal.py, resources/ctty.py): a pty pair
with both ends in the tree comes back with its pts number, termios, window
size, packet mode, lock, exclusive mode and the data queued both ways, and
the session whose controlling terminal it was gets it back with its
foreground group; a terminal whose master is outside the tree is refused
unless --shell-job, and then the restored job gets hiber's terminal."""

import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from conftest import (CHECK_SIGNAL, REPO, build_target, dump, dump_and_kill, reap_orphans,
                      restore, run_hiber)
from hiber.images.imagedir import ImageDir
from hiber.kernel import proc

pytestmark = pytest.mark.timeout(120)
TTY = 11  # fd_types.TTY


def test_a_pty_pair_comes_back_whole(start_target, tmp_path, crit):
    t = start_target("ptypair")
    index = int(t.info["pts"].rsplit("/", 1)[1])
    images = tmp_path / "images"
    dump_and_kill(t, images)
    imgs = ImageDir(images)
    infos = {i.id: i for i in imgs.read("TTY_INFO")}
    master, slave = infos[(index << 1) + 1], infos[index << 1]
    assert master.packet_mode and not master.locked and slave.exclusive
    assert master.sid == slave.sid == int(t.info["child"])
    assert (slave.winsize.ws_row, slave.winsize.ws_col) == (33, 111)
    # c_cc as CRIU 4.2 writes it: the control characters packed four to a
    # little-endian word (VINTR, the target's ^K, in the low byte of the first)
    assert len(slave.termios.c_cc) == 19 and slave.termios.c_cc[0] & 0xff == 11
    assert slave.termios.c_cc[1] >> 16 & 0xff == 3  # VMIN, c_cc[6]
    data = {d.tty_id: d.data for d in imgs.read("TTY_DATA")}
    assert data == {master.id: b"to-master\n", slave.id: b"to-slave\n"}
    ttys = [f for f in imgs.read("FILES") if f.type == TTY]
    assert {f.tty.tty_info_id for f in ttys} >= {master.id, slave.id}
    for name in ("files.img", "tty-info.img", "tty-data.img"):
        out = subprocess.run([crit, "decode", "-i", str(images / name)], capture_output=True)
        assert out.returncode == 0, f"crit cannot decode {name}: {out.stderr.decode()}"
    restore(images)
    t.check()


def test_a_dump_that_lets_the_tree_run_leaves_the_queued_data(start_target, tmp_path):
    t = start_target("ptypair")
    dump(t, tmp_path / "images", "-R")
    t.check()


def test_restored_pair_dumps_and_restores_again(start_target, tmp_path):
    t = start_target("ptypair")
    dump_and_kill(t, tmp_path / "first")
    restore(tmp_path / "first")
    dump_and_kill(t, tmp_path / "second")
    restore(tmp_path / "second")
    t.check()


class ShellJob:
    """A target started as a shell starts a job: its stdio on a pts whose
    master the test holds, in the test's session (not a session leader)."""

    def __init__(self):
        self.master, self.tty = pty.openpty()
        self.job = subprocess.Popen([str(build_target("simple"))], stdin=self.tty,
                                    stdout=self.tty, stderr=self.tty)
        self.pid = self.job.pid
        self.read_until(self.master, b"READY")

    @staticmethod
    def read_until(fd, word, timeout=10):
        seen, deadline = b"", time.monotonic() + timeout
        while word not in seen and time.monotonic() < deadline:
            seen += os.read(fd, 4096)
        return seen

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        reap_orphans()
        os.close(self.master)
        os.close(self.tty)


def test_a_terminal_whose_master_is_outside_is_refused_without_shell_job(tmp_path):
    job = ShellJob()
    try:
        result = run_hiber("dump", "-t", job.pid, "-D", tmp_path / "images")
        message = result.stderr.decode()
        assert result.returncode == 1 and message.count("\n") == 1, message
        assert "--shell-job" in message and f"PID {job.pid}" in message, message
        assert proc.status(job.pid)["State"][0] in "SR"  # left running as it was
    finally:
        job.close()


def test_a_shell_job_gets_the_terminal_hiber_runs_on(tmp_path):
    job = ShellJob()
    new_master, new_tty = pty.openpty()
    try:
        images = tmp_path / "images"
        result = run_hiber("dump", "-t", job.pid, "-D", images, "-j")
        assert result.returncode == 0, result.stderr.decode()
        job.job.wait(10)
        infos = ImageDir(images).read("TTY_INFO")
        assert all(i.id & 1 == 0 for i in infos)  # the slave only: its master is the shell's
        # without a terminal of its own, -j cannot give one: refused, nothing made
        result = run_hiber("restore", "-D", images, "-d", "-j")
        assert result.returncode == 1 and b"terminal" in result.stderr, result.stderr
        assert not proc.exists(job.pid)
        result = subprocess.run([sys.executable, "-m", "hiber", "restore", "-D", str(images),
                                 "-d", "-j"], cwd=REPO, stdin=new_tty, capture_output=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        assert os.readlink(f"/proc/{job.pid}/fd/0") == os.ttyname(new_tty)
        os.kill(job.pid, CHECK_SIGNAL)
        assert b"PASS" in ShellJob.read_until(new_master, b"PASS")
    finally:
        job.close()
        os.close(new_master)
        os.close(new_tty)
