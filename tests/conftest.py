import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# real CRIU 4.2 images with crit's JSON, kept inside the project so that a
# clone with nothing beside it runs every test (tests/data/golden/README.md)
GOLDEN = REPO / "tests" / "data" / "golden" / "criu-4.2"


def golden_image_files():
    """Every decodable golden image (no logs, no raw pages)."""
    files = []
    for path in sorted(GOLDEN.glob("*/images/*")):
        if path.suffix == ".log" or path.name.startswith("pages-"):
            continue
        files.append(path)
    return files


def decoded_json_of(image_path):
    return image_path.parent.parent / "decoded" / (image_path.name + ".json")


def run_hiber(*args, input=None, check=False, timeout=120, env=None):
    """Run the hiber command line as a user would, in its own process."""
    result = subprocess.run([sys.executable, "-m", "hiber", *map(str, args)],
                            input=input, capture_output=True, timeout=timeout, cwd=REPO,
                            stdin=None if input is not None else subprocess.DEVNULL,
                            env=dict(os.environ, **env) if env else None)
    if check and result.returncode != 0:
        raise AssertionError(f"hiber {' '.join(map(str, args))} failed:\n"
                             f"{result.stderr.decode(errors='replace')}")
    return result


@pytest.fixture(scope="session")
def crit():
    """Debian's crit (criu package); the test setup script installs it."""
    path = shutil.which("crit")
    if path is None:
        pytest.fail("crit is not installed: run scripts/setup.sh (apt-get install criu)")
    return path


# ---- C targets: built by the tests, run with their own stdio, always reaped --

import ctypes
import signal
import time

TARGETS_SRC = REPO / "tests" / "targets"
TARGETS_BIN = TARGETS_SRC / "bin"
CHECK_SIGNAL = signal.SIGRTMIN + 1
PR_SET_CHILD_SUBREAPER = 36


def dump_and_kill(t, images):
    """``hiber dump`` of a target as a user runs it (the tree is killed),
    the target reaped: its PID is free for the restore."""
    dump(t, images)


def dump(t, images, *extra):
    """``hiber dump`` of a target; unless -R is among ``extra`` the tree is
    killed and reaped, so its PIDs are free for the restore."""
    result = run_hiber("dump", "-t", t.pid, "-D", images, "-o", "dump.log", *extra)
    assert result.returncode == 0, result.stderr.decode()
    if "-R" not in extra:
        assert t.wait(10) == -signal.SIGKILL
        reap_orphans()  # its children, killed too, hold their PIDs until reaped
    return result


def restore(images, *extra):
    """``hiber restore -d`` that must succeed; the log's tail in the failure."""
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log", *extra)
    assert result.returncode == 0, result.stderr.decode() + \
        (images / "restore.log").read_text()[-3000:]
    return result


def restore_refused(images, *words):
    """The restore fails with one line naming ``words``, exit 1, creating
    nothing; its log ends with the failure."""
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    message = result.stderr.decode()
    assert result.returncode == 1, message
    assert message.count("\n") == 1, message
    for w in words:
        assert w in message, message
    assert "Restoring FAILED" in (images / "restore.log").read_text().splitlines()[-1]
    return message


def checkpoint_restore(t, images, dump_extra=(), restore_extra=()):
    """Dump then restore a target; it must be back, running, untraced."""
    from hiber.kernel import proc
    dump(t, images, *dump_extra)
    restore(images, *restore_extra)
    assert t.alive(), f"PID {t.pid} is not back"
    status = proc.status(t.pid)
    assert status["TracerPid"] == "0" and status["State"][0] in "SR"
    return t


def build_target(name, extra_flags=()):
    """Compile tests/targets/NAME.c (once, or again when it changed)."""
    source = TARGETS_SRC / f"{name}.c"
    binary = TARGETS_BIN / name
    deps = [source, TARGETS_SRC / "harness.h"]
    if not binary.exists() or binary.stat().st_mtime < max(d.stat().st_mtime for d in deps):
        TARGETS_BIN.mkdir(exist_ok=True)
        subprocess.run(["gcc", "-O1", "-g", "-Wall", "-pthread", "-o", str(binary), str(source),
                        *extra_flags], check=True, capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    return binary


def written(path, timeout=10):
    """The text a process writes to path, once there is some (a file is seen
    as soon as it is opened, before its text is in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.02)
    return path.read_text() if path.exists() else ""


def reap_orphans():
    """Collect exited descendants that were reparented to us (subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(scope="session", autouse=True)
def child_subreaper():
    """Orphans of the tests come to us, not to PID 1, which here does not reap
    (kernel-facts): every process a test starts is reaped by the tests."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    reap_orphans()


class Target:
    """A test target: stdin /dev/null, stdout+stderr to a file, its own
    session (a restore without --shell-job wants a session leader).

    It is followed by PID, not by its Popen object: after a dump and a
    restore, the process with that PID is a new one, which comes to the
    tests as an orphan (they are the child subreaper) and is reaped here."""

    def __init__(self, binary, args, workdir):
        self.out_path = pathlib.Path(workdir) / f"{pathlib.Path(binary).name}.out"
        out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([str(binary), *map(str, args)], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        self.pid = self.proc.pid
        self.info = {}

    def output(self):
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith("READY"):
                    self.info = dict(kv.split("=", 1) for kv in line.split()[1:])
                    return self.info
            if self.proc.poll() is not None:
                raise AssertionError(f"target exited before READY:\n{self.output()}")
            time.sleep(0.01)
        raise AssertionError(f"target not READY after {timeout}s:\n{self.output()}")

    def address(self, key):
        return int(self.info[key], 16)

    def wait(self, timeout=20):
        """Reap the process with our PID; its exit code (-N for signal N)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.proc.returncode  # reaped already
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return self.proc.returncode
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)

    def alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def check(self, timeout=20, expect_code=0):
        """Ask the target to verify itself; return its verdict output."""
        os.kill(self.pid, CHECK_SIGNAL)
        try:
            code = self.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"target did not finish its check:\n{self.output()}")
        text = self.output()
        assert code == expect_code and "PASS" in text, f"target check failed ({code}):\n{text}"
        return text

    def stop(self):
        """Kill the target and what it started: its process group (its own
        session's, which a restore keeps), then reap them all."""
        for kill in (lambda: os.killpg(self.pid, signal.SIGKILL),
                     lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.wait(10)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.05)  # the group's other members: gone before they are reaped
        reap_orphans()


@pytest.fixture
def start_target(tmp_path):
    started = []

    def start(name, *args, workdir=None):
        t = Target(build_target(name), args, workdir or tmp_path)
        started.append(t)
        t.wait_ready()
        return t

    yield start
    for t in started:
        t.stop()
