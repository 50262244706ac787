"""Inet sockets that are no TCP connection (resources/sockets/inet.py):
UDP (IPv4, IPv6, connected, shut down), UDP-Lite, TCP listeners (IPv4,
IPv6 only, dual stack), unbound and bound TCP sockets with their socket,
IP and TCP options and a socket filter, a broadcast UDP socket, an ICMP
ping socket and raw sockets with their ICMP filters come back: the program checks itself after the restore, once
the test has sent its UDP socket a datagram and connected to each listener."""

import socket
import subprocess

import pytest

from conftest import dump, restore, run_hiber
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
