"""State hiber cannot checkpoint yet is refused, never dropped: the dump
fails with one line naming the process and the state, and the process runs
on untouched."""

import os
import sys

import pytest

from conftest import Target, dump_and_kill, run_hiber

pytestmark = pytest.mark.timeout(60)

SLEEPER = "import time; print('READY', flush=True); time.sleep(120)"


def python_target(tmp_path, code, prefix=()):
    t = Target(prefix[0] if prefix else sys.executable,
               [*prefix[1:], *((sys.executable,) if prefix else ()), "-c", code], tmp_path)
    t.wait_ready()
    return t


def refused(tmp_path, target, *extra):
    result = run_hiber("dump", "-t", target.pid, "-D", tmp_path / "images", "-R", *extra)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert target.alive()
    return err


# (UTS, IPC, network, time and cgroup namespaces come back: test_namespaces.py,
# test_cgroups.py)
@pytest.mark.parametrize("kind,flag", [("mnt", "-m")])
def test_process_in_its_own_namespace_is_refused(tmp_path, kind, flag):
    t = python_target(tmp_path, SLEEPER, prefix=("/usr/bin/unshare", flag))
    try:
        err = refused(tmp_path, t)
        assert f"PID {t.pid} is in its own {kind} namespace" in err
        assert "cannot checkpoint namespaces" in err
    finally:
        t.stop()


LOCKERS = {
    "posix": "fcntl.lockf(f, fcntl.LOCK_EX)",
    "flock": "fcntl.flock(f, fcntl.LOCK_EX)",
    "ofd": "fcntl.fcntl(f, fcntl.F_OFD_SETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0))",
}


@pytest.mark.parametrize("how", sorted(LOCKERS))
def test_file_lock_without_the_option_is_refused_and_kept(tmp_path, how):
    # with --file-locks they come back: test_file_locks.py
    path = tmp_path / "locked"
    code = (f"import fcntl, struct, time; f = open({str(path)!r}, 'w'); {LOCKERS[how]}; "
            "print('READY', flush=True); time.sleep(120)")
    t = python_target(tmp_path, code)
    try:
        err = refused(tmp_path, t)
        assert f"PID {t.pid} holds a" in err and "--file-locks" in err
        locks = open("/proc/locks").read()
        assert f" {t.pid} " in locks or how == "ofd", locks  # still held
    finally:
        t.stop()


def test_images_with_a_namespace_of_their_own_are_refused(start_target, tmp_path):
    # CRIU's images of a containerised tree: ids-PID.img names a uts
    # namespace other than the inventory's root one
    from hiber.images.imagedir import ImageDir
    t = start_target("simple")
    images = tmp_path / "images"
    assert run_hiber("dump", "-t", t.pid, "-D", images).returncode == 0
    t.wait(10)
    d = ImageDir(images)
    ids = d.read_one("IDS", t.pid)
    ids.uts_ns_id = d.inventory().root_ids.uts_ns_id + 100
    d.write("IDS", t.pid, [ids])
    result = run_hiber("restore", "-D", images, "-d")
    err = result.stderr.decode().strip()
    assert result.returncode == 1 and len(err.splitlines()) == 1, err
    assert f"PID {t.pid} had its own uts namespace" in err
    assert not t.alive()


def test_proc_pid_directory_as_cwd_is_refused(tmp_path):
    """A dump that the restore could not bring back must not succeed: a
    stub enters its cwd before the processes a /proc/PID directory names
    exist. (Open files of such directories come back: test_proc_files.)"""
    code = ("import os, time; os.chdir('/proc/self/task'); print('READY', flush=True); "
            "time.sleep(120)")
    t = python_target(tmp_path, code)
    try:
        err = refused(tmp_path, t)
        assert f"/proc/{t.pid}" in err and "a process being dumped" in err, err
        assert "hiber cannot restore such" in err, err
    finally:
        t.stop()


def test_proc_file_of_a_process_outside_the_tree_comes_back(tmp_path):
    """PID 1's /proc files are there at restore, as any other file is."""
    code = ("import time; f = open('/proc/1/status'); print('READY', flush=True); "
            "time.sleep(120); print(f.read(5))")
    t = python_target(tmp_path, code)
    try:
        dump_and_kill(t, tmp_path / "images")
        result = run_hiber("restore", "-D", tmp_path / "images", "-d", "-o", "restore.log")
        assert result.returncode == 0, result.stderr.decode()
        links = [os.readlink(f"/proc/{t.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{t.pid}/fd")]
        assert "/proc/1/status" in links, links
    finally:
        t.stop()
