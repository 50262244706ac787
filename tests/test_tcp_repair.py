"""Established TCP connections through TCP_REPAIR (resources/sockets/tcp.py)
with --tcp-established, and the network lock (netlock.py).

Both ends in the tree: data in flight both ways (a send queue with bytes
sent but unacknowledged and bytes never sent, a receive queue full), IPv4,
IPv6, v4-mapped and a half-closed connection continue byte for byte. A peer
outside the tree that keeps sending through the dump and the restore sees
no reset and loses nothing. Without the option, dump and restore refuse in
one line naming --tcp-established."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import Target, build_target, dump, restore, restore_refused, run_hiber
from hiber.images.imagedir import ImageDir
from hiber.kernel import nftables

pytestmark = pytest.mark.timeout(180)


def tables():
    """The nftables tables of hiber's lock (CRIU-...) present now."""
    return [line for line in nftables.run("list tables").splitlines() if "CRIU-" in line]


@pytest.fixture
def tcpconn(start_target):
    return start_target("tcpconn")


def test_connections_continue_byte_for_byte(tcpconn, tmp_path, crit):
    t = tcpconn
    images = tmp_path / "images"
    before = tables()
    dump(t, images, "--tcp-established")
    files = ImageDir(images).read("FILES")
    connections = [f.isk for f in files if f.HasField("isk") and f.isk.dst_port]
    assert len(connections) == 8
    states = sorted(i.state for i in connections)
    assert states == [1, 1, 1, 1, 1, 1, 5, 8]  # FIN_WAIT2 and CLOSE_WAIT for the half one
    streams = ImageDir(images).keys("TCP_STREAM")
    assert sorted(streams) == sorted(i.ino for i in connections)
    out = subprocess.run([crit, "decode", "-i", str(images / f"tcp-stream-{streams[0]:x}.img")],
                         capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    assert len(tables()) == len(before) + 1  # the lock holds until the restore
    restore(images, "--tcp-established")
    assert tables() == before  # ... and goes with it
    t.check(timeout=60)


def test_a_dump_that_lets_the_tree_run_leaves_them_working(tcpconn, tmp_path):
    before = tables()
    dump(tcpconn, tmp_path / "images", "--tcp-established", "-R")
    assert tables() == before
    tcpconn.check(timeout=60)


def test_without_tcp_established_the_dump_is_refused(tcpconn, tmp_path):
    result = run_hiber("dump", "-t", tcpconn.pid, "-D", tmp_path / "images", "-R")
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1, err
    assert "connected TCP socket" in err and "--tcp-established" in err, err
    assert tcpconn.alive()
    tcpconn.check(timeout=60)


def test_without_tcp_established_the_restore_is_refused(tcpconn, tmp_path):
    images = tmp_path / "images"
    dump(tcpconn, images, "--tcp-established")
    try:
        restore_refused(images, "connected TCP socket", "--tcp-established")
        assert not tcpconn.alive()
    finally:
        run_hiber("restore", "-D", images, "-d", "-o", "restore2.log", "--tcp-established")
        tcpconn.stop()


PEER = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("CONNECTED", flush=True)
sent, i, end = 0, 0, time.monotonic() + float(sys.argv[2])
try:
    while time.monotonic() < end:
        chunk = bytes((sent + k) % 251 for k in range(100))
        s.sendall(chunk)
        sent += len(chunk)
        time.sleep(0.005)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    reply = b""
    while not reply.endswith(b"\\n"):
        got = s.recv(100)
        if not got:
            break
        reply += got
    print("SENT", sent, "REPLY", reply.decode().strip(), flush=True)
except OSError as e:
    print("ERROR", sent, e, flush=True)
"""

SERVER = """
import signal, socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
print("READY port=%d" % l.getsockname()[1], flush=True)
c, _ = l.accept()
checked = []
signal.signal(signal.SIGRTMIN + 1, lambda *_: checked.append(1))
while not checked:
    signal.pause()
got = b""
while True:
    data = c.recv(65536)
    if not data:
        break
    got += data
ok = all(b == i % 251 for i, b in enumerate(got))
c.sendall(b"%d %s\\n" % (len(got), b"ok" if ok else b"bad"))
print("PASS" if ok else "FAIL pattern", len(got), flush=True)
"""


def test_a_peer_outside_the_tree_sending_through_the_dump_sees_no_reset(tmp_path):
    said = peer_through_a_checkpoint(tmp_path)
    assert "ERROR" not in said, said
    sent = int(said.split("SENT")[1].split()[0])
    assert f"REPLY {sent} ok" in said, said


def test_without_the_lock_that_peer_is_reset(tmp_path):
    """What the lock is for: --network-lock skip lets the peer's packets
    meet no socket, and the kernel answers them with a RST."""
    said = peer_through_a_checkpoint(tmp_path, "--network-lock", "skip")
    assert "ERROR" in said and "reset" in said.lower(), said


def peer_through_a_checkpoint(tmp_path, *lock):
    """A server in the tree, its peer outside sending 100 bytes every 5 ms
    for 4 s through a dump and a restore; what the peer says at the end."""
    server = Target(sys.executable, ["-c", SERVER], tmp_path)
    peer = None
    try:
        server.wait_ready()
        out = open(tmp_path / "peer.out", "wb")
        peer = subprocess.Popen([sys.executable, "-c", PEER, server.info["port"], "4"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 10
        while b"CONNECTED" not in (tmp_path / "peer.out").read_bytes():
            assert time.monotonic() < deadline and peer.poll() is None
            time.sleep(0.01)
        time.sleep(0.5)
        images = tmp_path / "images"
        dump(server, images, "--tcp-established", *lock)
        time.sleep(0.5)  # the peer goes on sending into the lock
        restore(images, "--tcp-established")
        if not lock:
            server.check(timeout=60)  # it reads until the peer's end, then replies
        peer.wait(timeout=60)
        return (tmp_path / "peer.out").read_text()
    finally:
        if peer is not None and peer.poll() is None:
            peer.kill()
            peer.wait()
        server.stop()


def test_tcp_close_brings_connections_back_closed(tcpconn, tmp_path):
    images = tmp_path / "images"
    dump(tcpconn, images, "--tcp-close")
    assert not ImageDir(images).keys("TCP_STREAM")
    restore(images, "--tcp-close")
    assert tcpconn.alive()
    tcpconn.stop()


def test_the_network_lock_method_iptables_is_refused(tcpconn, tmp_path):
    result = run_hiber("dump", "-t", tcpconn.pid, "-D", tmp_path / "images", "-R",
                       "--tcp-established", "--network-lock", "iptables")
    err = result.stderr.decode()
    assert result.returncode == 1 and "iptables" in err and "nftables" in err, err
    assert tcpconn.alive()
    tcpconn.check(timeout=60)


def test_nftables_is_there():
    assert nftables.works()
    build_target("tcpconn")


HALF_CLOSED = """
import signal, socket, sys, time
sys.path.insert(0, sys.argv[1])
from hiber.kernel import nftables
def pair():
    l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
    c = socket.create_connection(l.getsockname()); a, _ = l.accept()
    return c, a, l.getsockname()[1]
def state(s):
    return s.getsockopt(6, 11, 1)[0]  # tcp_info's first byte
# 1: the server's packets dropped: the client's FIN is never acknowledged
c1, a1, p1 = pair()
# 2: the client shut down; then its packets dropped: the server's FIN is
# never acknowledged (the client has it: its socket is closed)
c2, a2, p2 = pair()
c2.sendall(b"two"); c2.shutdown(socket.SHUT_WR)
time.sleep(0.2)
nftables.run("add table inet " + sys.argv[2],
             "add chain inet %s out { type filter hook output priority 0; }" % sys.argv[2],
             "add rule inet %s out tcp sport %d drop" % (sys.argv[2], p1),
             "add rule inet %s out tcp dport %d drop" % (sys.argv[2], p2))
c1.sendall(b"one"); c1.shutdown(socket.SHUT_WR)
a2.sendall(b"back"); a2.shutdown(socket.SHUT_WR)
time.sleep(0.3)
print("READY", "states=%d,%d,%d,%d" % (state(c1), state(a1), state(c2), state(a2)), flush=True)
checked = []
signal.signal(signal.SIGRTMIN + 1, lambda *_: checked.append(1))
while not checked:
    signal.pause()
for s in (c1, a1, c2, a2):
    s.settimeout(10)
fails = []
def expect(ok, what):
    if not ok:
        fails.append(what); print("FAIL", what, flush=True)
expect(a1.recv(10) == b"one" and a1.recv(10) == b"", "1: the server lost data or the end")
a1.sendall(b"reply")
expect(c1.recv(10) == b"reply", "1: the client cannot read any more")
a1.close()
expect(c1.recv(10) == b"", "1: the client did not see the end")
expect(a2.recv(10) == b"two" and a2.recv(10) == b"", "2: the server lost data or the end")
expect(c2.recv(10) == b"back" and c2.recv(10) == b"", "2: the client lost data or the end")
deadline = time.monotonic() + 10
while state(a2) != 7 and time.monotonic() < deadline:  # its FIN acknowledged at last
    time.sleep(0.05)
expect(state(a2) == 7, "2: the server's FIN is never acknowledged (state %d)" % state(a2))
print("FAILED" if fails else "PASS", flush=True)
sys.exit(1 if fails else 0)
"""


def test_half_closed_connections_come_back_in_their_states(tmp_path):
    """FIN_WAIT1 with CLOSE_WAIT (our FIN not acknowledged), and LAST_ACK
    with a closed end (the peer's FIN received, ours not acknowledged): made
    with nftables rules that drop the acknowledgements, dumped, the rules
    gone, restored: the FINs are acknowledged at last and the data and the
    ends are where they were."""
    from conftest import REPO
    table = f"hibertest{os.getpid()}"
    t = Target(sys.executable, ["-c", HALF_CLOSED, REPO, table], tmp_path)
    try:
        t.wait_ready()
        assert t.info["states"] == "4,8,7,9", t.info  # FIN_WAIT1 CLOSE_WAIT CLOSE LAST_ACK
        images = tmp_path / "images"
        dump(t, images, "--tcp-established")
        nftables.run(f"delete table inet {table}")
        restore(images, "--tcp-established")
        t.check(timeout=60)
    finally:
        try:
            nftables.run(f"delete table inet {table}")
        except nftables.NftError:
            pass
        t.stop()


CONNECTING = """
import select, signal, socket, sys, time
sys.path.insert(0, sys.argv[1])
from hiber.kernel import nftables
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
port = l.getsockname()[1]
# the SYNs to the listener are dropped: the connection stays in SYN_SENT
nftables.run("add table inet " + sys.argv[2],
             "add chain inet %s in { type filter hook input priority 0; }" % sys.argv[2],
             "add rule inet %s in tcp dport %d tcp flags syn drop" % (sys.argv[2], port))
c = socket.socket(); c.setblocking(False)
try:
    c.connect(("127.0.0.1", port))
except BlockingIOError:
    pass
time.sleep(0.2)
print("READY state=%d" % c.getsockopt(6, 11, 1)[0], flush=True)
checked = []
signal.signal(signal.SIGRTMIN + 1, lambda *_: checked.append(1))
while not checked:
    signal.pause()
ok = select.select([], [c], [], 20)[1] and c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
l.settimeout(5)
a, _ = l.accept()
c.setblocking(True)
c.sendall(b"hi")
ok = ok and a.recv(2) == b"hi"
print("PASS" if ok else "FAIL connect", flush=True)
sys.exit(0 if ok else 1)
"""


def test_a_connection_still_connecting_comes_back_and_connects(tmp_path):
    """SYN_SENT (its SYNs dropped by an nftables rule): restored with the
    same initial sequence number, it connects once the rule is gone."""
    from conftest import REPO
    table = f"hibertest{os.getpid()}"
    t = Target(sys.executable, ["-c", CONNECTING, REPO, table], tmp_path)
    try:
        t.wait_ready()
        assert t.info["state"] == "2", t.info  # SYN_SENT
        images = tmp_path / "images"
        dump(t, images, "--tcp-established")
        nftables.run(f"delete table inet {table}")
        restore(images, "--tcp-established")
        t.check(timeout=60)
    finally:
        try:
            nftables.run(f"delete table inet {table}")
        except nftables.NftError:
            pass
        t.stop()


NAMESPACE_LOCK = """
import ctypes, socket, sys
sys.path.insert(0, sys.argv[1])
from hiber.resources.sockets import netlock
assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0  # CLONE_NEWNET
import subprocess
def udp_through():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r, \\
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        r.bind(("127.0.0.1", 0)); r.settimeout(0.3)
        try:  # a packet dropped on its way out: EPERM
            s.sendto(b"x", r.getsockname())
            return r.recv(1) == b"x"
        except (socket.timeout, OSError):
            return False
# lo is down in a new namespace: up it through an ioctl (SIOCSIFFLAGS)
import fcntl, struct
with socket.socket() as s:
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 1 | 0x40))
before = udp_through()
netlock.lock_namespace("nstest")
locked = udp_through()
netlock.unlock_namespace("nstest")
after = udp_through()
print(before, locked, after, flush=True)
"""


def test_a_whole_network_namespace_can_be_locked(tmp_path):
    """What a tree with a network namespace of its own needs (criu's lock of
    the namespace): nothing passes until the lock goes."""
    from conftest import REPO
    out = subprocess.run([sys.executable, "-c", NAMESPACE_LOCK, REPO], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.stdout.split() == ["True", "False", "True"], out.stdout + out.stderr


def test_a_failed_dump_leaves_the_connections_working_and_unlocked(tcpconn, tmp_path):
    before = tables()
    result = run_hiber("dump", "-t", tcpconn.pid, "-D", tmp_path / "images",
                       "--tcp-established", env={"HIBER_FAULT": "files"})
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1, result.stderr
    assert tables() == before
    tcpconn.check(timeout=60)


def test_a_failed_restore_removes_the_lock_and_the_images_still_restore(tcpconn, tmp_path):
    images = tmp_path / "images"
    before = tables()
    dump(tcpconn, images, "--tcp-established")
    result = run_hiber("restore", "-D", images, "-d", "--tcp-established",
                       env={"HIBER_FAULT": "rebuild"})
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1, result.stderr
    assert not tcpconn.alive()
    assert tables() == before
    restore(images, "--tcp-established")
    tcpconn.check(timeout=60)


IN_A_NAMESPACE = """
import ctypes, fcntl, socket, struct, sys, time
assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0  # CLONE_NEWNET
with socket.socket() as s:  # lo up (SIOCSIFFLAGS)
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 1 | 0x40))
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
print("READY port=%d" % l.getsockname()[1], flush=True)
time.sleep(120)
"""


def test_sock_diag_and_the_lock_reach_a_socket_in_another_network_namespace(tmp_path):
    """For trees with a network namespace of their own: a socket is asked
    about, and its connection locked, in its own namespace."""
    from hiber.kernel import inet_diag, netns
    from hiber.resources.sockets.netlock import NetworkLock
    t = Target(sys.executable, ["-c", IN_A_NAMESPACE], tmp_path)
    try:
        t.wait_ready()
        port = int(t.info["port"])
        nsfd = os.open(f"/proc/{t.pid}/ns/net", os.O_RDONLY)
        try:
            assert not netns.is_ours(nsfd)
            theirs = netns.call_in(nsfd, inet_diag.inet_sockets, 2, 6, 0)
            ours = inet_diag.inet_sockets(2, 6, 0)
            assert sorted(s.state for s in theirs.values() if port in
                          (s.src_port, s.dst_port)) == [1, 1, 10]
            assert not set(theirs) & set(ours)
            lock = NetworkLock("nstest-lock")
            loopback = socket.inet_aton("127.0.0.1")
            netns.call_in(nsfd, lock.lock, 2, loopback, port, loopback, 1)
            assert "CRIU-nstest-lock" in netns.call_in(nsfd, nftables.run, "list tables")
            assert "CRIU-nstest-lock" not in nftables.run("list tables")
            netns.call_in(nsfd, lock.unlock)
            assert "CRIU-nstest-lock" not in netns.call_in(nsfd, nftables.run, "list tables")
        finally:
            os.close(nsfd)
    finally:
        t.stop()
