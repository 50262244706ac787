"""hiber killed at any instant of a dump harms nothing (docs/interrupted-dumps.md).

`hiber dump -t PID -D DIR -R` is run as a user runs it and killed (SIGKILL,
SIGTERM) at random instants of the dump. The targets (targets/unharmed.c)
check themselves all the time: registers and AVX state held across loops
and syscalls, signal masks, CPU affinity, a sigaltstack and its handler,
progress of every thread, a memory checksum; the tests read their verdict
from their memory, and compare their mappings with what they were. The same
live targets serve every kill point. A killed restore must leave nothing
half-restored behind.
"""

import os
import pathlib
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from conftest import REPO, Target, build_target, reap_orphans, run_hiber
from hiber.kernel import proc

# kill points: (target, signal) -> how many
KILLS_PER_TARGET = {"big": 16, "tree": 20, "seccomp": 16}
STOPPED_KILLS = 10
RESTORE_KILLS = 12
STATUS = struct.Struct("<4Q5Q")  # struct status of unharmed.c
SPIN, SLEEP, READ, FUTEX, SIGNALS = range(5)  # its workers
TALLY = {}  # what test_summary prints: kind of kill point -> counts


def memory_images(tmp_path):
    """Images of big dumps go to memory, not to the disk, when they can."""
    shm = pathlib.Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"hiber-kill-safety-{os.getpid()}"
    return tmp_path / "images"


@dataclass
class Watched:
    """A live unharmed target and its children, verdicts read from memory."""
    target: Target
    status_address: int
    pids: list
    maps: dict = field(default_factory=dict)

    @classmethod
    def start(cls, workdir, *args):
        t = Target(build_target("unharmed"), args, workdir)
        info = t.wait_ready()
        children = [] if info["children"] == "-" else [int(c) for c in info["children"].split(",")]
        deadline = time.monotonic() + 20
        while sum(line.startswith("CHILD-READY") for line in t.output().splitlines()) \
                < len(children):
            assert time.monotonic() < deadline, f"children not ready:\n{t.output()}"
            time.sleep(0.01)
        w = cls(t, int(info["status"], 16), [t.pid] + children)
        w.maps = {pid: proc.read_text(pid, "maps") for pid in w.pids}
        return w

    def status(self, pid):
        with open(f"/proc/{pid}/mem", "rb") as mem:
            mem.seek(self.status_address)
            values = STATUS.unpack(mem.read(STATUS.size))
        return {"failures": values[0], "rounds": values[1], "sums": values[2],
                "handled": values[3], "progress": values[4:]}

    def snapshot(self):
        return {pid: self.status(pid) for pid in self.pids}

    def assert_unharmed(self, before, what, busy=False, signals=True, timeout=60):
        """Every process runs, untraced, its mappings as they were, and found
        nothing wrong; its main thread and the workers in syscalls made
        progress since ``before``, and with ``busy`` the SCHED_IDLE ones
        too (on a loaded machine they may wait long for a CPU)."""
        for pid in self.pids:
            assert proc.exists(pid), f"{what}: PID {pid} is gone\n{self.target.output()}"
            deadline = time.monotonic() + timeout
            while True:
                now = self.status(pid)
                state = proc.stat(pid).state
                then = before[pid]
                moved = now["rounds"] >= then["rounds"] + 3 and all(
                    now["progress"][i] > then["progress"][i] for i in (SLEEP, READ, FUTEX))
                if busy:
                    moved = moved and now["progress"][SPIN] > then["progress"][SPIN] \
                        and now["sums"] >= then["sums"] + 2
                if busy and signals:
                    moved = moved and now["handled"] > then["handled"] \
                        and now["progress"][SIGNALS] > then["progress"][SIGNALS]
                if moved or now["failures"] or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            assert now["failures"] == 0, f"{what}: PID {pid} found harm:\n{self.target.output()}"
            assert moved, f"{what}: PID {pid} made no progress (state {state})"
            assert state in "RS", f"{what}: PID {pid} is in state {state}"
            assert proc.status(pid)["TracerPid"] == "0", f"{what}: PID {pid} is still traced"
            assert proc.read_text(pid, "maps") == self.maps[pid], \
                f"{what}: the mappings of PID {pid} changed"

    def assert_all_verified(self, before, what):
        """Every worker, the busy ones too, went on since ``before``, and two
        more memory checksums were verified."""
        self.assert_unharmed(before, what, busy=True, timeout=120)


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """Started once, used by every kill point of the module."""
    work = tmp_path_factory.mktemp("unharmed")
    started = {}
    try:
        for name, args in (("big", (256, 0, "none")), ("tree", (16, 2, "none")),
                           ("seccomp", (16, 0, "sandbox"))):
            (work / name).mkdir()
            started[name] = Watched.start(work / name, *args)
        yield started
    finally:
        for w in started.values():
            for pid in w.pids[1:]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            w.target.stop()
        reap_orphans()


def hiber_dump(pid, images):
    return subprocess.Popen([sys.executable, "-m", "hiber", "dump", "-t", str(pid), "-D",
                             str(images), "-R", "-o", "dump.log"], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def dump_seconds(pid, images):
    """How long a whole dump takes, from its log's first to its last line."""
    shutil.rmtree(images, ignore_errors=True)
    result = run_hiber("dump", "-t", pid, "-D", images, "-R", "-o", "dump.log")
    assert result.returncode == 0, result.stderr.decode()
    last = (images / "dump.log").read_text().splitlines()[-1]
    return float(last.split(")")[0].strip("("))


def kill_during_dump(pid, images, signo, delay):
    """Start a dump, send ``signo`` ``delay`` seconds after its log appears;
    hiber's exit code and stderr."""
    shutil.rmtree(images, ignore_errors=True)
    hiber = hiber_dump(pid, images)
    log = images / "dump.log"
    while not log.exists() and hiber.poll() is None:
        time.sleep(0.0005)
    time.sleep(delay)
    hiber.send_signal(signo)
    try:
        _, err = hiber.communicate(timeout=60)
    finally:
        hiber.kill()
        hiber.wait()
    return hiber.returncode, err.decode()


def assert_hiber_ended_as_asked(signo, code, err, log):
    """SIGKILL: dead, or done already. SIGTERM: one line saying so, the log
    written, or done already (or dead, when it came before hiber set its
    handlers up)."""
    if code == 0:
        return
    if signo == signal.SIGKILL:
        assert code == -signal.SIGKILL, err
        return
    if code == -signo:
        return
    assert code == 1 and err.count("\n") == 1, err
    assert f"interrupted by {signo.name}" in err, err
    assert f"interrupted by {signo.name}" in log.read_text().splitlines()[-1]


def tally(kind, landed, **extra):
    """One kill point survived; ``landed``: while hiber was at work (not
    before it set anything up, nor after it had finished)."""
    counts = TALLY.setdefault(kind, {"tried": 0, "survived": 0, "landed": 0})
    counts["tried"] += 1
    counts["survived"] += 1
    counts["landed"] += landed
    for key, value in extra.items():
        counts[key] = counts.get(key, 0) + value


@pytest.mark.timeout(600)
@pytest.mark.parametrize("signo", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_dumps_harm_nothing(targets, tmp_path, signo):
    rng = random.Random(int(signo) * 7919 + os.getpid())
    first = {name: w.snapshot() for name, w in targets.items()}
    for name, w in targets.items():
        images = memory_images(tmp_path) if name == "big" else tmp_path / "images"
        try:
            seconds = dump_seconds(w.pids[0], images)
            for i in range(KILLS_PER_TARGET[name]):
                before = w.snapshot()
                delay = rng.uniform(0, seconds * 1.15)
                code, err = kill_during_dump(w.pids[0], images, signo, delay)
                what = f"{name} target, {signo.name} {delay * 1000:.1f} ms into the dump"
                assert_hiber_ended_as_asked(signo, code, err, images / "dump.log")
                w.assert_unharmed(before, what)
                tally(f"dump of the {name} target, {signo.name}", code != 0)
        finally:
            shutil.rmtree(images, ignore_errors=True)
    for name, w in targets.items():
        w.assert_all_verified(first[name], f"{name} target after its {signo.name} kill points")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT],
                         ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"])
def test_signal_during_dump_thaws_and_says_so(targets, tmp_path, signo):
    """Sent while the memory is being written: the dump stops at the next
    batch of pages, lets the process go and says why in one line."""
    w = targets["big"]
    images = memory_images(tmp_path)
    shutil.rmtree(images, ignore_errors=True)
    before = w.snapshot()
    hiber = hiber_dump(w.pids[0], images)
    try:
        log = images / "dump.log"
        deadline = time.monotonic() + 60
        while not (log.exists() and "Frozen" in log.read_text()):
            assert hiber.poll() is None and time.monotonic() < deadline, "no freeze logged"
            time.sleep(0.001)
        hiber.send_signal(signo)
        _, err = hiber.communicate(timeout=60)
        err = err.decode()
        if hiber.returncode != 0:  # 0: it finished first, on a very fast machine
            assert hiber.returncode == 1 and err.count("\n") == 1, err
            assert f"interrupted by {signo.name}" in err
            assert f"interrupted by {signo.name}" in log.read_text().splitlines()[-1]
    finally:
        hiber.kill()
        hiber.wait()
        shutil.rmtree(images, ignore_errors=True)
    w.assert_all_verified(before, f"{signo.name} during the dump")


@pytest.mark.timeout(120)
def test_killed_dump_leaves_a_stopped_process_stopped(tmp_path):
    """A job-control-stopped process is woken to run syscalls in it; killed,
    hiber leaves it stopped all the same (its guard re-stops it)."""
    w = Watched.start(tmp_path, 16, 0, "none")
    images = tmp_path / "images"
    try:
        os.kill(w.pids[0], signal.SIGSTOP)
        while proc.stat(w.pids[0]).state != "T":
            time.sleep(0.001)
        seconds = dump_seconds(w.pids[0], images)
        assert proc.stat(w.pids[0]).state == "T"
        rng = random.Random(os.getpid())
        for i in range(STOPPED_KILLS):
            before = w.snapshot()
            delay = rng.uniform(0, seconds * 1.15)
            code, err = kill_during_dump(w.pids[0], images, signal.SIGKILL, delay)
            assert_hiber_ended_as_asked(signal.SIGKILL, code, err, images / "dump.log")
            deadline = time.monotonic() + 5
            while proc.stat(w.pids[0]).state != "T" or \
                    proc.status(w.pids[0])["TracerPid"] != "0":
                assert time.monotonic() < deadline, \
                    f"{delay * 1000:.1f} ms: left in state {proc.stat(w.pids[0]).state}"
                time.sleep(0.001)
            reap_orphans()  # the guard, orphaned by hiber's death
            # the guard races the woken process: count how often it lost
            tally("dump of a stopped process, SIGKILL", code != 0,
                  ran_a_moment=w.snapshot() != before)
        before = w.snapshot()
        os.kill(w.pids[0], signal.SIGCONT)
        w.assert_all_verified(before, "continued after the kill points")
    finally:
        w.target.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", ["filter", "sandbox", "nosigreturn"])
def test_dump_under_a_seccomp_filter_that_kills(tmp_path, variant):
    """Injected syscalls bypass the target's filter (PTRACE_O_SUSPEND_SECCOMP).
    A filter that forbids rt_sigreturn rules the signal frame out: registers
    and mask are put back after each syscall instead. The log names the
    calls a filter forbids, which a hiber killed during them would leave to
    the filter (docs/interrupted-dumps.md); the kill points above use the
    sandbox, which lists them."""
    w = Watched.start(tmp_path, 16, 0, variant)
    try:
        before = w.snapshot()
        result = run_hiber("dump", "-t", w.pids[0], "-D", tmp_path / "images", "-R",
                           "-o", "dump.log", "-v4")
        assert result.returncode == 0, result.stderr.decode()
        log = (tmp_path / "images" / "dump.log").read_text()
        assert ("would not let it run rt_sigreturn" in log) == (variant == "nosigreturn")
        assert ("its seccomp filters forbid" in log) == (variant != "sandbox")
        w.assert_unharmed(before, f"dump of a process under a seccomp {variant}",
                          busy=True, signals=variant != "nosigreturn")
    finally:
        w.target.stop()


@pytest.mark.timeout(180)
def test_killed_restore_leaves_nothing_half_restored(start_target, tmp_path):
    """Killed at any instant, a restore leaves either nothing or the whole
    restored process, running untraced and passing its own check."""
    t = start_target("threads")
    binary = os.readlink(f"/proc/{t.pid}/exe")
    images = tmp_path / "images"
    result = run_hiber("dump", "-t", t.pid, "-D", images, "-o", "dump.log")
    assert result.returncode == 0, result.stderr.decode()
    t.wait(10)
    reap_orphans()
    log = images / "restore.log"
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode()
    seconds = float(log.read_text().splitlines()[-1].split(")")[0].strip("("))
    os.kill(t.pid, signal.SIGKILL)
    t.wait(10)
    reap_orphans()
    rng = random.Random(os.getpid())
    for i in range(RESTORE_KILLS):
        signo = (signal.SIGKILL, signal.SIGTERM)[i % 2]
        log.unlink()
        hiber = subprocess.Popen([sys.executable, "-m", "hiber", "restore", "-D", str(images),
                                  "-d", "-o", "restore.log"], cwd=REPO,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        while not log.exists() and hiber.poll() is None:
            time.sleep(0.0005)
        delay = rng.uniform(0, seconds * 1.15)
        time.sleep(delay)
        hiber.send_signal(signo)
        hiber.wait(60)
        what = f"restore, {signo.name} {delay * 1000:.1f} ms in"
        restored = settled_restore(t.pid, binary, what)
        if restored:
            t.info = {}
            t.out_path.write_bytes(b"")  # the restored process writes on into it
            t.check()
            reap_orphans()
        tally("restore, SIGKILL and SIGTERM", hiber.returncode != 0,
              left_it_restored=restored)
        assert not proc.exists(t.pid)


def settled_restore(pid, binary, what, timeout=20):
    """Once hiber is dead: True if ``pid`` is the whole restored process
    (its own program, untraced, and staying alive), False if it is gone.
    Anything else (a stub, a traced or half-made process) fails."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        reap_orphans()
        try:
            if not proc.exists(pid):
                return False
            seen = (os.readlink(f"/proc/{pid}/exe"), proc.stat(pid).state,
                    proc.status(pid)["TracerPid"])
        except (OSError, proc.NoSuchProcess):
            continue  # it ended under our eyes
        if seen[0] == binary and seen[1] != "Z" and seen[2] == "0":
            time.sleep(0.3)  # one killed by hiber's end would be gone by now
            if proc.exists(pid) and proc.stat(pid).state != "Z":
                return True
        assert time.monotonic() < deadline, \
            f"{what}: PID {pid} was left behind (exe, state, tracer: {seen})"
        time.sleep(0.005)


def test_summary():
    """Prints the kill points tried, survived, and landed inside the work."""
    for kind, counts in TALLY.items():
        print(f"\n{kind}: " + ", ".join(f"{key} {value}" for key, value in counts.items()),
              end="")
    print()
