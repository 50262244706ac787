"""Pages that travel: the page server, lazy restore and lazy migration
(pages/server.py, pages/lazy.py), with targets/dirtier.c checking every
page against its model after the restore, in itself and in a child it
forks then, after moving an area with mremap and dropping a page."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, reap_orphans, restore_refused, run_hiber

pytestmark = pytest.mark.timeout(180)
PORT = 27181  # loopback only


def _round(t, n):
    os.kill(t.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while f"ROUND {n}" not in t.output():
        assert time.monotonic() < deadline, t.output()
        time.sleep(0.01)


def _background(*args):
    """A hiber command that tells its readiness on --status-fd, as criu's
    daemons do; returns it once ready."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "hiber", *map(str, args), "--status-fd",
                             str(write_end)], pass_fds=[write_end], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        ready = os.read(read_end, 1)
    finally:
        os.close(read_end)
    if ready != b"\0":
        proc.kill()
        raise AssertionError(f"hiber {args[0]} did not start: {proc.communicate()[1]}")
    return proc


def _finished(proc, timeout=60):
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err.decode()


def _restore(images, *extra):
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log", *extra)
    assert result.returncode == 0, result.stderr.decode() + \
        (images / "restore.log").read_text()[-2000:]


def test_page_server_receives_the_pages(start_target, tmp_path):
    t = start_target("dirtier", 16)
    _round(t, 1)
    server = _background("page-server", "-D", tmp_path, "--port", PORT, "-o", "ps.log")
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path, "-o", "dump.log", "--page-server",
                       "--address", "127.0.0.1", "--port", PORT)
    assert result.returncode == 0, result.stderr.decode()
    _finished(server)
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    pages_files = [f for f in os.listdir(tmp_path) if f.startswith("pages-")]
    assert pages_files and all(int(f[6:-4]) > 0x10000 for f in pages_files), pages_files
    _restore(tmp_path)
    assert t.check()


def test_dump_refuses_an_absent_page_server(start_target, tmp_path):
    t = start_target("dirtier", 1)
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path, "--page-server", "--address",
                       "127.0.0.1", "--port", PORT)
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and "page server" in result.stderr.decode()
    assert t.alive()


def test_lazy_restore(start_target, tmp_path):
    t = start_target("dirtier", 128)
    _round(t, 1)
    _round(t, 2)
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path, "-o", "dump.log")
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    daemon = _background("lazy-pages", "-D", tmp_path, "-o", "lazy-pages.log")
    _restore(tmp_path, "--lazy-pages")
    # checked at once: pages may still be arriving, through the fork and
    # the mremap the check makes
    assert t.check()
    _finished(daemon)
    log = (tmp_path / "lazy-pages.log").read_text()
    assert "lazy page(s) to serve" in log and "served" in log
    assert not (tmp_path / "lazy-pages.socket").exists()


def test_lazy_restore_needs_its_daemon(start_target, tmp_path):
    t = start_target("dirtier", 1)
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path, "-o", "dump.log")
    assert result.returncode == 0
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    result = run_hiber("restore", "-D", tmp_path, "-d", "--lazy-pages")
    assert result.returncode == 1
    assert "lazy-pages" in result.stderr.decode()
    assert not t.alive()


def test_lazy_migration(start_target, tmp_path):
    """dump --lazy-pages keeps the lazy pages back and serves them; the
    restore runs as soon as the rest is in place, fetching them."""
    t = start_target("dirtier", 32)
    _round(t, 1)
    dumping = _background("dump", "-t", t.pid, "-D", tmp_path, "-o", "dump.log",
                          "--lazy-pages", "--port", PORT)
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    # what the images hold without the kept pages is refused to a plain restore
    restore_refused(tmp_path, "--lazy-pages")
    daemon = _background("lazy-pages", "-D", tmp_path, "-o", "lazy-pages.log",
                         "--page-server", "--address", "127.0.0.1", "--port", PORT)
    _restore(tmp_path, "--lazy-pages")
    assert t.check()
    _finished(daemon)
    _finished(dumping)
