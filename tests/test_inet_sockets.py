"""Inet sockets that are no TCP connection (resources/sockets/inet.py):
UDP (IPv4, IPv6, connected, shut down), UDP-Lite, TCP listeners (IPv4,
IPv6 only, dual stack), unbound and bound TCP sockets with their socket,
IP and TCP options and a socket filter, a broadcast UDP socket, an ICMP
ping socket and raw sockets with their ICMP filters come back: the program checks itself after the restore, once
the test has sent its UDP socket a datagram and connected to each listener."""

import json
import os
import pathlib
import socket
import sys
import subprocess
import time

import pytest

from conftest import REPO, Target, dump, restore, run_hiber
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(120)


def talk_to(t):
    """What the program expects of the world after the restore."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"hello", ("127.0.0.1", int(t.info["udp4"])))
    made = [socket.create_connection(("127.0.0.1", int(t.info["l4"])), timeout=5),
            socket.create_connection(("::1", int(t.info["l6"])), timeout=5),
            socket.create_connection(("127.0.0.1", int(t.info["ldual"])), timeout=5)]
    return made


def test_inet_sockets_come_back_and_work(start_target, tmp_path, crit):
    t = start_target("inetsockets")
    images = tmp_path / "images"
    dump(t, images)
    files = ImageDir(images).read("FILES")
    inet = [f.isk for f in files if f.HasField("isk")]
    assert len(inet) == 14 + (t.info["ping"] == "1")
    listeners = [i for i in inet if i.state == 10]
    assert sorted(i.backlog for i in listeners) == [3, 5, 7]
    assert any(i.family == socket.AF_INET6 and i.v6only for i in listeners)
    out = subprocess.run([crit, "decode", "-i", str(images / "files.img")], capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    assert "inet6 socket" in run_hiber("show", images).stdout.decode()
    restore(images)
    made = talk_to(t)
    try:
        t.check()
    finally:
        for s in made:
            s.close()


def test_a_dump_that_lets_the_tree_run_leaves_them_working(start_target, tmp_path):
    t = start_target("inetsockets")
    dump(t, tmp_path / "images", "-R")
    made = talk_to(t)
    try:
        t.check()
    finally:
        for s in made:
            s.close()


def refused(tmp_path, code, *words):
    """A Python program holding ``code``'s sockets: its dump is refused in
    one line naming ``words``, and it runs on."""
    from conftest import Target
    import sys
    t = Target(sys.executable, ["-c", "import socket, time\n" + code +
                                "\nprint('READY', flush=True)\ntime.sleep(120)"], tmp_path)
    try:
        t.wait_ready()
        result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-R")
        err = result.stderr.decode()
        assert result.returncode == 1 and err.count("\n") == 1, err
        assert f"PID {t.pid} fd " in err, err
        for w in words:
            assert w in err, err
        assert t.alive()
    finally:
        t.stop()


def test_a_corked_udp_socket_is_refused_as_by_criu(tmp_path):
    refused(tmp_path, "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "u.connect(('127.0.0.1', 9)); u.setsockopt(17, 1, 1); u.send(b'x')",
            "corked UDP socket")


def test_a_listener_with_connections_not_accepted_is_refused(tmp_path):
    refused(tmp_path, "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
            "c = socket.create_connection(l.getsockname())",
            "not accepted yet", "--tcp-skip-in-flight")


def test_an_mptcp_socket_is_refused(tmp_path):
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close()
    except OSError:
        pytest.skip("no MPTCP here")
    refused(tmp_path, "m = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)",
            "protocol 262")


# ---- the same images as CRIU's ------------------------------------------------------

GOLDEN_INET = REPO / "tests" / "data" / "golden" / "criu-4.2"


def _described_as_criu(files, streams):
    """What a dump says of each inet socket and connection, without what
    differs from run to run (inodes, file ids, the client's port, the
    sequence numbers and timestamps): in fd order."""
    described = []
    for e in files["entries"]:
        if e["type"] != "INETSK":
            continue
        i = dict(e["isk"])
        for key in ("id", "ino", "fown", "ns_id"):
            i.pop(key, None)
        if i["dst_port"] == 47011:  # the client: its port is the kernel's choice
            i.pop("src_port")
        elif i["src_port"] == 47011 and i["dst_port"]:  # ... and the server's peer
            i.pop("dst_port")
        for key in ("so_sndbuf", "so_rcvbuf"):  # autotuned while data came and went
            i["opts"].pop(key)
        described.append(i)
    queues = sorted((s["entries"][0]["inq_len"], s["entries"][0]["outq_len"],
                     s["entries"][0]["unsq_len"], s["entries"][0]["opt_mask"],
                     s["entries"][0]["mss_clamp"], s["entries"][0]["extra"]["inq"],
                     s["entries"][0]["extra"]["outq"]) for s in streams)
    return described, queues


def _decoded(images, name):
    return json.loads(run_hiber("decode", "--pretty", "-i", images / name,
                                check=True).stdout)


def test_hiber_writes_the_inet_sockets_criu_wrote(tmp_path):
    """The program CRIU 4.2 dumped for the golden images, dumped by hiber:
    the same sockets, options and queues (tests/data/golden)."""
    binary = tmp_path / "inet"
    subprocess.run(["gcc", "-O1", "-o", binary, GOLDEN_INET / "inet.c"], check=True,
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    t = Target(binary, [], tmp_path)
    try:
        deadline = time.monotonic() + 10
        while "ready" not in t.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        images = tmp_path / "images"
        result = run_hiber("dump", "-t", t.pid, "-D", images, "-R", "--tcp-established")
        assert result.returncode == 0, result.stderr.decode()
        golden = GOLDEN_INET / "inet" / "images"
        theirs = _described_as_criu(
            json.loads((golden.parent / "decoded" / "files.img.json").read_text()),
            [json.loads((golden.parent / "decoded" / f"{p.name}.json").read_text())
             for p in sorted(golden.glob("tcp-stream-*"))])
        ours = _described_as_criu(_decoded(images, "files.img"),
                                  [_decoded(images, p.name)
                                   for p in sorted(images.glob("tcp-stream-*"))])
        assert ours == theirs
    finally:
        t.stop()


def test_hiber_restores_criu_s_inet_images(tmp_path):
    """CRIU 4.2's images of inet.c (a connection with data both ways among
    them) restored by hiber: the connection works on. The program must be
    built again byte for byte where CRIU's images name it, and its PID and
    ports must be free."""
    import shutil
    from hiber.images.imagedir import ImageDir
    golden = GOLDEN_INET / "inet" / "images"
    exe = next(f.reg for f in ImageDir(golden).read("FILES")
               if f.HasField("reg") and f.reg.name == "/tmp/golden/inet")
    pid = ImageDir(golden).read("PSTREE")[0].pid
    os.makedirs("/tmp/golden", exist_ok=True)
    built = tmp_path / "inet"
    subprocess.run(["gcc", "-O1", "-o", built, GOLDEN_INET / "inet.c"], check=True,
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    if built.stat().st_size != exe.size or os.path.exists(f"/proc/{pid}"):
        pytest.skip("this compiler does not build CRIU's binary again, or its PID is taken")
    if not os.path.exists("/tmp/golden/inet") or \
            pathlib.Path("/tmp/golden/inet").read_bytes() != built.read_bytes():
        shutil.copy(built, "/tmp/golden/inet")
    images = tmp_path / "images"
    shutil.copytree(golden, images)
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log", "--tcp-established")
    if "build-id" in result.stderr.decode() or "build id" in result.stderr.decode():
        pytest.skip("this compiler does not build CRIU's binary again")
    assert result.returncode == 0, result.stderr.decode()
    try:
        # the restored listener accepts; both ends of the connection (fds 4
        # and 5: the program only pauses) are established again, with the
        # bytes unread each way: 6 for the client, 5 for the server
        with socket.create_connection(("127.0.0.1", 47011), timeout=5):
            pass
        unread = {}
        for line in open("/proc/net/tcp").read().splitlines()[1:]:
            fields = line.split()
            unread[int(fields[9])] = (fields[3], int(fields[4].split(":")[1], 16))
        ends = [unread.get(os.stat(f"/proc/{pid}/fd/{fd}").st_ino) for fd in (4, 5)]
        assert ends == [("01", 6), ("01", 5)]
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        from conftest import reap_orphans
        for _ in range(100):
            reap_orphans()
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)


PREFORK = """
import os, signal, socket, sys, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(8)
child = os.fork()
if child == 0:  # the child serves: it accepts on the listener it shares
    while True:
        c, _ = l.accept()
        c.sendall(b"child %d\\n" % os.getpid())
        c.close()
print("READY port=%d child=%d" % (l.getsockname()[1], child), flush=True)
checked = []
signal.signal(signal.SIGRTMIN + 1, lambda *_: checked.append(1))
while not checked:
    signal.pause()
same = os.stat("/proc/%d/fd/%d" % (child, l.fileno())).st_ino == os.fstat(l.fileno()).st_ino
os.kill(child, signal.SIGKILL); os.waitpid(child, 0)
print("PASS" if same else "FAIL: the child's listener is another socket", flush=True)
sys.exit(0 if same else 1)
"""


def test_a_listener_shared_with_a_child_comes_back_shared(tmp_path):
    """A pre-fork server: the child accepts on the listener it inherited;
    after the restore it is one socket in both, and the child serves."""
    t = Target(sys.executable, ["-c", PREFORK], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images")
        files = ImageDir(tmp_path / "images").read("FILES")
        assert sum(f.HasField("isk") for f in files) == 1
        restore(tmp_path / "images")
        with socket.create_connection(("127.0.0.1", int(t.info["port"])), timeout=10) as c:
            assert c.recv(100) == b"child %s\n" % t.info["child"].encode()
        t.check()
    finally:
        t.stop()


def test_tcp_skip_in_flight_drops_the_waiting_connections(tmp_path):
    """As criu --tcp-skip-in-flight: the listener comes back without the
    connections it had not accepted, and accepts new ones."""
    code = ("l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
            "print('READY port=%d' % l.getsockname()[1], flush=True)\n"
            "import signal; checked = []\n"
            "signal.signal(signal.SIGRTMIN + 1, lambda *_: checked.append(1))\n"
            "while not checked: signal.pause()\n"
            "l.settimeout(5); a, _ = l.accept(); a.sendall(b'new')\n"
            "print('PASS', flush=True)")
    t = Target(sys.executable, ["-c", "import socket\n" + code], tmp_path)
    try:
        t.wait_ready()
        waiting = socket.create_connection(("127.0.0.1", int(t.info["port"])), timeout=10)
        try:
            refused = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "refused", "-R")
            assert refused.returncode == 1 and b"not accepted yet" in refused.stderr
            dump(t, tmp_path / "images", "--tcp-skip-in-flight")
        finally:
            waiting.close()
        restore(tmp_path / "images")
        with socket.create_connection(("127.0.0.1", int(t.info["port"])), timeout=10) as c:
            t.check()
            assert c.recv(3) == b"new"
    finally:
        t.stop()


IN_FLIGHT = """
import array, signal, socket, sys
a, b = socket.socketpair()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(3)
names = (u.getsockname(), l.getsockname())
a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                    array.array("i", [u.fileno(), l.fileno()]))])
u.close(); l.close()  # they live only in the queue now
print("READY", flush=True)
checked = []
signal.signal(signal.SIGRTMIN + 1, lambda *_: checked.append(1))
while not checked:
    signal.pause()
_, anc, _, _ = b.recvmsg(1, socket.CMSG_LEN(8))
fds = array.array("i"); fds.frombytes(anc[0][2])
u, l = socket.socket(fileno=fds[0]), socket.socket(fileno=fds[1])
ok = (u.getsockname(), l.getsockname()) == names and \\
    l.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
print("PASS" if ok else "FAIL %r" % ((u.getsockname(), l.getsockname()),), flush=True)
sys.exit(0 if ok else 1)
"""


def test_inet_sockets_in_flight_in_a_unix_queue_come_back(tmp_path):
    """A UDP socket and a listener passed with SCM_RIGHTS and closed by
    their sender live only in the unix socket's queue: they come back
    there, bound and listening as they were."""
    t = Target(sys.executable, ["-c", IN_FLIGHT], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        t.check()
    finally:
        t.stop()
