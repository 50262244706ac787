"""criu's RPC, as runc, podman and libcriu speak it: `hiber swrk FD` and
`hiber service` answer every request type with the same dump, restore,
pre-dump, page server and check the command line runs."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, reap_orphans
from hiber.images.messages import classes as C

T = dict(DUMP=1, RESTORE=2, CHECK=3, PRE_DUMP=4, NOTIFY=6, CPUINFO_DUMP=7, FEATURE_CHECK=9,
         VERSION=10, WAIT_PID=11, PAGE_SERVER_CHLD=12)


class Client:
    """A client such as pycriu: a socketpair, `hiber swrk` on its other end."""

    def __init__(self):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-m", "hiber", "swrk",
                                      str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                     cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()

    def ask(self, req, on_notify=None):
        self.sock.send(req.SerializeToString())
        while True:
            resp = C["criu_resp"]()
            resp.ParseFromString(self.sock.recv(1 << 20))
            if resp.type != T["NOTIFY"] or on_notify is None:
                return resp
            ok = on_notify(resp.notify.script, resp.notify.pid)
            self.sock.send(C["criu_req"](type=T["NOTIFY"], notify_success=ok)
                           .SerializeToString())

    def close(self):
        self.sock.close()
        self.proc.wait(30)


def _request(kind, **opts):
    if not opts:
        return C["criu_req"](type=T[kind])
    opts.setdefault("images_dir_fd", -1)
    return C["criu_req"](type=T[kind], opts=C["criu_opts"](**opts))


def _once(req, on_notify=None):
    client = Client()
    try:
        return client.ask(req, on_notify)
    finally:
        client.close()


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "300"], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield p
    for pid in (p.pid,):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    reap_orphans()


def test_version_check_and_features():
    resp = _once(_request("VERSION"))
    assert resp.success and (resp.version.major_number, resp.version.minor_number) == (4, 2)
    assert _once(_request("CHECK")).success
    req = C["criu_req"](type=T["FEATURE_CHECK"], features=C["criu_features"](
        mem_track=False, lazy_pages=False))
    resp = _once(req)
    assert resp.success and resp.features.HasField("mem_track")


def test_dump_and_restore_with_the_clients_descriptor_and_notifications(tmp_path, sleeper):
    images = tmp_path / "images"
    images.mkdir()
    fd = os.open(images, os.O_DIRECTORY)   # a descriptor of the client's, as runc passes it
    try:
        seen = []
        resp = _once(_request("DUMP", images_dir_fd=fd, pid=sleeper.pid, log_file="dump.log",
                              log_level=4, notify_scripts=True),
                     lambda script, pid: seen.append(script) or True)
        assert resp.success, resp.cr_errmsg
        assert seen == ["pre-dump", "post-dump"]
        assert sleeper.wait(10) == -9
        seen.clear()
        resp = _once(_request("RESTORE", images_dir_fd=fd, log_file="restore.log",
                              notify_scripts=True),
                     lambda script, pid: seen.append(script) or True)
        assert resp.success, resp.cr_errmsg
        assert resp.restore.pid == sleeper.pid and os.path.exists(f"/proc/{sleeper.pid}")
        assert seen == ["pre-restore", "post-restore", "pre-resume", "post-resume"]
        assert (images / "restore.log").exists()
    finally:
        os.close(fd)


def test_a_failed_notification_aborts_the_dump(tmp_path, sleeper):
    images = tmp_path / "images"
    images.mkdir()
    resp = _once(_request("DUMP", images_dir=str(images), pid=sleeper.pid,
                          notify_scripts=True), lambda script, pid: False)
    assert not resp.success and "pre-dump" in resp.cr_errmsg
    assert sleeper.poll() is None  # left running


def test_pre_dump_then_dump_with_its_parent(tmp_path, sleeper):
    (tmp_path / "pre").mkdir()
    (tmp_path / "full").mkdir()
    resp = _once(_request("PRE_DUMP", images_dir=str(tmp_path / "pre"), pid=sleeper.pid))
    assert resp.success, resp.cr_errmsg
    resp = _once(_request("DUMP", images_dir=str(tmp_path / "full"), pid=sleeper.pid,
                          parent_img="../pre", track_mem=True))
    assert resp.success, resp.cr_errmsg
    assert os.readlink(tmp_path / "full" / "parent") == "../pre"


def test_page_server_and_wait_pid(tmp_path, sleeper):
    (tmp_path / "served").mkdir()
    (tmp_path / "local").mkdir()
    client = Client()
    try:
        req = _request("PAGE_SERVER_CHLD", images_dir=str(tmp_path / "served"))
        req.keep_open = True
        resp = client.ask(req)
        assert resp.success and resp.ps.pid > 0 and resp.ps.port > 0
        dumped = _once(_request("DUMP", images_dir=str(tmp_path / "local"), pid=sleeper.pid,
                                ps=C["criu_page_server_info"](address="127.0.0.1",
                                                              port=resp.ps.port)))
        assert dumped.success, dumped.cr_errmsg
        waited = client.ask(C["criu_req"](type=T["WAIT_PID"], pid=resp.ps.pid))
        assert waited.success and waited.status == 0
        assert any(n.startswith("pages-") for n in os.listdir(tmp_path / "served"))
    finally:
        client.close()


def test_what_hiber_cannot_honour_is_refused():
    resp = _once(_request("DUMP", images_dir="/tmp", pid=1, external=["mnt[x]:y"]))
    assert not resp.success and resp.cr_errno and "external" in resp.cr_errmsg
    resp = _once(C["criu_req"](type=T["CPUINFO_DUMP"]))
    assert not resp.success and resp.cr_errmsg


def test_the_service_on_a_unix_socket(tmp_path):
    address = str(tmp_path / "criu.sock")
    service = subprocess.Popen([sys.executable, "-m", "hiber", "service", "--address", address],
                               cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(address) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(2):  # one session a connection, one after the other
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                s.connect(address)
                s.send(_request("VERSION").SerializeToString())
                resp = C["criu_resp"]()
                resp.ParseFromString(s.recv(1 << 16))
                assert resp.success and resp.version.major_number == 4
    finally:
        service.kill()
        service.wait(10)
