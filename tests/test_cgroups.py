"""Cgroups: tasks and threads come back to the cgroups they were in, the
directories are made again as criu's --manage-cgroups modes say, with their
mode, owner and properties, and a failed restore removes what it made."""

import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import build_target, dump, reap_orphans, restore, run_hiber
from hiber.images.imagedir import ImageDir

NAME = "hibertest"


def _v1_hierarchy_of(controller):
    with open("/proc/self/cgroup") as f:
        return any(line.split(":")[1] == controller for line in f)


def _remove_tree(top):
    """rmdir a cgroup and everything under it, deepest first; a cgroup
    whose killed tasks are still exiting is busy for a moment."""
    if not os.path.isdir(top):
        return
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(dirpath)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                reap_orphans()
                time.sleep(0.02)


@pytest.fixture
def named_hierarchy(tmp_path):
    """A named cgroup v1 hierarchy of the tests' own, mounted in tmp_path."""
    mnt = tmp_path / "cgroup"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "cgroup", "-o", f"none,name={NAME}", "none", str(mnt)],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    if done.returncode != 0:
        pytest.skip("this kernel mounts no named cgroup v1 hierarchy: "
                    + done.stderr.decode().strip())
    job = f"job{os.getpid()}-{uuid.uuid4().hex[:8]}"  # never one a test before left
    try:
        yield f"name={NAME}", mnt, job
    finally:
        _remove_tree(mnt / job)
        subprocess.run(["umount", str(mnt)], check=True, stdin=subprocess.DEVNULL, timeout=30)


@pytest.fixture
def pids_cgroup():
    """A cgroup of the v1 pids controller, whose pids.max is a property
    hiber saves."""
    top = "/sys/fs/cgroup/pids"
    if not _v1_hierarchy_of("pids") or not os.path.isdir(top):
        pytest.skip("no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids")
    path = f"{top}/hibertest{os.getpid()}"
    _remove_tree(path)
    try:
        yield path
    finally:
        _remove_tree(path)


def _set(path, name, value):
    with open(os.path.join(path, name), "w") as f:
        f.write(str(value))


def _get(path, name):
    with open(os.path.join(path, name)) as f:
        return f.read().strip()


def test_tasks_and_threads_come_back_to_their_cgroups(named_hierarchy, start_target, tmp_path):
    hierarchy, mnt, job = named_hierarchy
    (mnt / job / "worker").mkdir(parents=True)
    (mnt / job / "child").mkdir()
    os.chmod(mnt / job, 0o751)
    os.chown(mnt / job / "child", 1000, 1001)
    t = start_target("cgroups", hierarchy, mnt, job)
    images = tmp_path / "images"
    dump(t, images)

    entry = ImageDir(images).read_one("CGROUP")
    paths = {m.path for s in entry.sets for m in s.ctls if m.name == hierarchy}
    assert paths == {f"/{job}", f"/{job}/worker", f"/{job}/child"}
    assert ImageDir(images).read_one("CORE", int(t.info["worker"])).thread_core.cg_set != \
        ImageDir(images).read_one("CORE", t.pid).thread_core.cg_set

    _remove_tree(mnt / job)  # as after a reboot: restore makes them again
    restore(images)
    assert os.stat(mnt / job).st_mode & 0o7777 == 0o751
    st = os.stat(mnt / job / "child")
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    t.check()


def test_a_cgroup_namespace_of_the_trees_own(named_hierarchy, start_target, tmp_path):
    hierarchy, mnt, job = named_hierarchy
    for sub in ("worker", "child"):
        (mnt / job / sub).mkdir(parents=True)
    t = start_target("cgroups", hierarchy, mnt, job, "ns")
    own = os.stat("/proc/self/ns/cgroup").st_ino
    assert os.stat(f"/proc/{t.pid}/ns/cgroup").st_ino != own
    images = tmp_path / "images"
    dump(t, images)
    entry = ImageDir(images).read_one("CGROUP")
    prefixes = {(m.path, m.cgns_prefix) for s in entry.sets for m in s.ctls
                if m.name == hierarchy}
    assert prefixes == {(f"/{job}", len(job) + 1), (f"/{job}/worker", len(job) + 1),
                        (f"/{job}/child", len(job) + 1)}

    _remove_tree(mnt / job)
    restore(images)
    child = int(t.info["child"])
    for pid in (t.pid, child):  # one namespace, not hiber's
        assert os.stat(f"/proc/{pid}/ns/cgroup").st_ino != own
    assert os.stat(f"/proc/{t.pid}/ns/cgroup").st_ino == \
        os.stat(f"/proc/{child}/ns/cgroup").st_ino
    t.check()


def test_nested_cgroup_namespaces_are_refused(named_hierarchy, tmp_path):
    hierarchy, mnt, job = named_hierarchy
    for sub in ("worker", "child"):
        (mnt / job / sub).mkdir(parents=True)
    binary = build_target("cgroups")
    out = tmp_path / "out"
    # a shell in hiber's cgroup namespace, its child in one of its own
    with open(out, "wb") as f:
        shell = subprocess.Popen(["sh", "-c", f'"{binary}" {hierarchy} "{mnt}" {job} ns & wait'],
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while b"READY" not in out.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        result = run_hiber("dump", "-t", shell.pid, "-D", tmp_path / "images")
        assert result.returncode == 1, result.stderr.decode()
        message = result.stderr.decode()
        assert message.count("\n") == 1 and "cgroup namespaces" in message, message
        assert shell.poll() is None  # left running as it was
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(10)
        reap_orphans()


def test_a_tree_in_hibers_own_cgroups_needs_no_cgroup_image(start_target, tmp_path):
    t = start_target("simple")
    images = tmp_path / "images"
    dump(t, images)
    d = ImageDir(images)
    assert not d.exists("CGROUP")
    assert d.inventory().root_cg_set == d.read_one("CORE", t.pid).thread_core.cg_set == 1
    restore(images)
    t.check()


def test_properties_as_each_mode_says(pids_cgroup, start_target, tmp_path):
    os.mkdir(pids_cgroup)
    _set(pids_cgroup, "pids.max", 77)
    t = start_target("simple")
    _set(pids_cgroup, "cgroup.procs", t.pid)

    # soft (the default): a missing cgroup is made with its properties
    dump(t, tmp_path / "one")
    os.rmdir(pids_cgroup)
    restore(tmp_path / "one")
    assert _get(pids_cgroup, "pids.max") == "77"
    assert str(t.pid) in _get(pids_cgroup, "cgroup.procs").split()

    # soft: an existing one is used as it is now
    dump(t, tmp_path / "two")
    _set(pids_cgroup, "pids.max", 99)
    restore(tmp_path / "two")
    assert _get(pids_cgroup, "pids.max") == "99"

    # full: an existing one gets the dumped properties back
    dump(t, tmp_path / "three")
    _set(pids_cgroup, "pids.max", 55)
    restore(tmp_path / "three", "--manage-cgroups=full")
    assert _get(pids_cgroup, "pids.max") == "99"

    # strict: an existing one is an error, and nothing is touched
    dump(t, tmp_path / "four")
    result = run_hiber("restore", "-D", tmp_path / "four", "-d", "--manage-cgroups=strict")
    assert result.returncode == 1 and "exists already" in result.stderr.decode()
    assert result.stderr.decode().count("\n") == 1 and not t.alive()
    # none: a missing one is an error, and none is made
    os.rmdir(pids_cgroup)
    result = run_hiber("restore", "-D", tmp_path / "four", "-d", "--manage-cgroups", "none")
    assert result.returncode == 1 and "does not exist" in result.stderr.decode()
    assert not os.path.exists(pids_cgroup) and not t.alive()
    # ignore: the tree stays in hiber's cgroups
    restore(tmp_path / "four", "--manage-cgroups=ignore")
    assert not os.path.exists(pids_cgroup)
    t.check()


def test_a_failed_restore_removes_the_cgroups_it_made(named_hierarchy, start_target, tmp_path):
    hierarchy, mnt, job = named_hierarchy
    for sub in ("worker", "child"):
        (mnt / job / sub).mkdir(parents=True)
    t = start_target("cgroups", hierarchy, mnt, job)
    images = tmp_path / "images"
    dump(t, images)
    _remove_tree(mnt / job)
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log",
                       env={"HIBER_FAULT": "rebuild"})
    assert result.returncode == 1 and not t.alive()
    assert not (mnt / job).exists()
    restore(images)  # and the images are whole: a restore after it works
    t.check()


def test_cgroup_image_reads_with_crit(named_hierarchy, start_target, tmp_path, crit):
    hierarchy, mnt, job = named_hierarchy
    for sub in ("worker", "child"):
        (mnt / job / sub).mkdir(parents=True)
    t = start_target("cgroups", hierarchy, mnt, job)
    images = tmp_path / "images"
    dump(t, images)
    shown = subprocess.run([crit, "show", str(images / "cgroup.img")], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=60)
    assert shown.returncode == 0, shown.stderr.decode()
    assert f"/{job}/worker".encode() in shown.stdout
    restore(images)
    t.check()
