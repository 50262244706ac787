"""A tree in UTS and IPC namespaces of its own comes back in new ones, with
its host and domain names and its SysV objects (ids, keys, owners, data);
nested namespaces are refused in one line, leaving the tree running."""

import os
import shlex
import signal
import socket
import sys
import time

from conftest import Target, dump, reap_orphans, restore, run_hiber, written
from hiber.images.imagedir import ImageDir


def _ns(pid, kind):
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def test_uts_and_ipc_namespaces_come_back(start_target, tmp_path):
    t = start_target("namespaced")
    host = socket.gethostname()
    images = tmp_path / "images"
    dump(t, images)
    d = ImageDir(images)
    ids = d.read_one("IDS", t.pid)
    assert d.read_one("UTSNS", ids.uts_ns_id).nodename == "hiber-box"
    assert {e.desc.id for e in d.read("IPCNS_SHM", ids.ipc_ns_id)} == \
        {int(t.info["shm"]), int(t.info["private_shm"])}

    for name in os.listdir(images):  # hiber decode | hiber encode gives the same bytes
        if name.startswith(("ipcns-", "utsns-")):
            shown = run_hiber("decode", "-i", images / name, check=True).stdout
            again = run_hiber("encode", "-o", tmp_path / name, input=shown, check=True)
            assert again.returncode == 0
            assert (tmp_path / name).read_bytes() == (images / name).read_bytes()

    restore(images)
    child = int(t.info["child"])
    for kind in ("uts", "ipc"):
        assert _ns(t.pid, kind) != _ns(os.getpid(), kind)
        assert _ns(t.pid, kind) == _ns(child, kind)
    assert socket.gethostname() == host  # hiber's own names untouched
    t.check()


def test_nested_namespaces_are_refused(start_target, tmp_path):
    t = start_target("namespaced", "nested")
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images")
    message = result.stderr.decode()
    assert result.returncode == 1 and message.count("\n") == 1, message
    assert "2 different uts namespaces" in message
    assert t.alive()
    t.check()


CLOCK_WRITER = """
import os, sys, time
path = sys.argv[1]
print("READY", flush=True)
os.dup2(os.open("/dev/null", os.O_WRONLY), 1)  # the output file is the parent's too
os.dup2(1, 2)
while True:
    with open(path + ".new", "w") as f:
        f.write(repr(time.clock_gettime(time.CLOCK_MONOTONIC)))
    os.replace(path + ".new", path)
    time.sleep(0.01)
"""


def _clock_seen(path, after):
    """The restored writer's next reading of its CLOCK_MONOTONIC."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.stat().st_mtime_ns > after:
            return float(path.read_text())
        time.sleep(0.01)
    raise AssertionError("the restored process wrote no clock reading")


def _writer(tmp_path, *prefix):
    clock = tmp_path / "clock"
    t = Target(prefix[0] if prefix else sys.executable,
               [*prefix[1:], sys.executable, "-c", CLOCK_WRITER, clock] if prefix
               else ["-c", CLOCK_WRITER, clock], tmp_path)
    t.wait_ready()
    while not clock.exists():
        time.sleep(0.01)
    return t, clock


def _downtime_is_hidden(t, pid, clock, tmp_path, *restore_options):
    images = tmp_path / "images"
    result = run_hiber("dump", "-t", pid, "-D", images)
    assert result.returncode == 0, result.stderr.decode()
    t.wait(10)
    reap_orphans()
    before = float(clock.read_text())
    time.sleep(1.5)  # time spent in images: the tree must not see it
    mark = time.time_ns()
    restore(images, *restore_options)
    try:
        after = _clock_seen(clock, mark)
        assert before < after < before + 1.0, (before, after)
        assert _ns(pid, "time") != _ns(os.getpid(), "time")
    finally:
        os.kill(pid, signal.SIGKILL)
        reap_orphans()
    return before


def test_clocks_go_on_from_the_dumped_values(tmp_path):
    t, clock = _writer(tmp_path)
    _downtime_is_hidden(t, t.pid, clock, tmp_path)


def test_a_time_namespace_of_the_trees_own(tmp_path):
    # util-linux unshare forks the writer into a time namespace 1000 s ahead
    t, clock = _writer(tmp_path, "/usr/bin/unshare", "--time", "--fork", "--monotonic",
                       "1000")
    writer = int(open(f"/proc/{t.pid}/task/{t.pid}/children").read().split()[0])
    # (the writer is not its session's leader: -j puts it in hiber's session)
    before = _downtime_is_hidden(t, writer, clock, tmp_path, "-j")
    assert before > time.clock_gettime(time.CLOCK_MONOTONIC) + 900


NET_SETUP = ("ip link set lo up && ip addr add 10.7.7.7/32 dev lo && "
             "ip route add 10.9.0.0/16 dev lo && echo 7 > /proc/sys/net/unix/max_dgram_qlen && "
             "exec {python} -c {code}")
NET_PROGRAM = """
import socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
server.bind("\\0hiber-netns-test")  # abstract names are per network namespace
print("READY", flush=True)
while True:
    data, peer = server.recvfrom(100)
    if data == b"addresses?":
        import subprocess
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True).stdout
        routes = subprocess.run(["ip", "route"], capture_output=True).stdout
        qlen = open("/proc/sys/net/unix/max_dgram_qlen").read()
        open(sys.argv[1], "wb").write(out + routes + qlen.encode())
"""


def test_a_network_namespace_of_the_trees_own(tmp_path):
    report = tmp_path / "report"
    code = NET_SETUP.format(python=sys.executable, code=shlex.quote(NET_PROGRAM))
    t = Target("/usr/bin/unshare", ["-n", "sh", "-c", code + f" {report}"], tmp_path)
    try:
        t.wait_ready()
        images = tmp_path / "images"
        dump(t, images)
        names = os.listdir(images)
        assert {n.split("-")[0] for n in names} >= {"netdev", "netns", "ifaddr", "route"}
        restore(images)
        assert _ns(t.pid, "net") != _ns(os.getpid(), "net")
        # ask it, from inside its namespace, what it sees
        fd = os.open(f"/proc/{t.pid}/ns/net", os.O_RDONLY)
        try:
            from hiber.resources.ns import switch
            with switch.inside("net", fd):
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(b"addresses?", "\0hiber-netns-test")
        finally:
            os.close(fd)
        seen = written(report)
        assert "10.7.7.7/32" in seen and "10.9.0.0/16 dev lo" in seen, seen
        assert seen.rstrip().endswith("7"), seen
    finally:
        t.stop()


def test_a_network_namespace_with_other_links_is_refused(tmp_path):
    code = (f"ip link add v7 type veth peer name v8 && exec {sys.executable} -c "
            f"{shlex.quote(SLEEPER)}")
    t = Target("/usr/bin/unshare", ["-n", "sh", "-c", code], tmp_path)
    try:
        t.wait_ready()
        result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images")
        message = result.stderr.decode()
        assert result.returncode == 1 and message.count("\n") == 1, message
        assert "veth link v" in message
        assert t.alive()
    finally:
        t.stop()


SLEEPER = "import time; print('READY', flush=True); time.sleep(120)"


NS_FILES = """
import os, signal, sys, time
fds = {kind: os.open(f"/proc/self/ns/{kind}", os.O_RDONLY) for kind in ("net", "uts", "mnt")}
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
same = all(os.fstat(fd).st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino
           for kind, fd in fds.items())
open(sys.argv[1], "w").write(str(same))
time.sleep(60)
"""


def test_namespace_files_come_back(tmp_path):
    report = tmp_path / "report"
    t = Target("/usr/bin/unshare", ["-u", sys.executable, "-c", NS_FILES, report], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        os.kill(t.pid, signal.SIGUSR1)
        assert written(report) == "True"
    finally:
        t.stop()


def test_a_file_of_a_namespace_not_its_own_is_refused(tmp_path):
    # hiber's network namespace, held by a process in one of its own
    code = (f"import os, time; fd = os.open('/proc/{os.getpid()}/ns/net', os.O_RDONLY); "
            "print('READY', flush=True); time.sleep(60)")
    t = Target("/usr/bin/unshare", ["-n", sys.executable, "-c", code], tmp_path)
    try:
        t.wait_ready()
        result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images")
        message = result.stderr.decode()
        assert result.returncode == 1 and message.count("\n") == 1, message
        assert "not live in" in message and t.alive()
    finally:
        t.stop()
