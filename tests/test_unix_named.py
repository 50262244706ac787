"""Unix sockets beyond pairs (resources/sockets/unix*.py): bound to paths
(relative, deleted, replaced), to abstract names or to nothing, listening
with a connection waiting, datagram senders, peers closed with data queued,
descriptors passed in queues, a peer outside the tree with --ext-unix-sk;
and what stays refused, in one line, the tree left running."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, Target, dump, dump_and_kill, restore, restore_refused, run_hiber
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(180)

STREAM, DGRAM, SEQPACKET = 1, 2, 5
ESTABLISHED, CLOSE, LISTEN = 1, 7, 10


def unix_entries(images):
    return [f.usk for f in ImageDir(images).read_optional("FILES") if f.HasField("usk")]


def by_name(sockets, name):
    return [s for s in sockets if s.name.rstrip(b"\0") == name]


def test_named_sockets_come_back(start_target, tmp_path, crit):
    work = tmp_path / "work"
    work.mkdir()
    t = start_target("unixnamed", work)
    images = tmp_path / "images"
    dump_and_kill(t, images)
    sockets = unix_entries(images)
    listen = [s for s in by_name(sockets, str(work / "listen.sock").encode())
              if s.state == LISTEN]
    assert len(listen) == 1 and listen[0].backlog == 8
    perms = listen[0].file_perms
    assert stat.S_IMODE(perms.mode) == 0o640 and (perms.uid, perms.gid) == (4321, 8765)
    waiting = [s for s in sockets if s.peer == listen[0].ino]
    assert len(waiting) == 1 and waiting[0].state == ESTABLISHED  # tied to its listener
    rel = by_name(sockets, b"rel.sock")
    assert len(rel) == 1 and rel[0].name_dir == str(work) and rel[0].type == SEQPACKET
    gone = by_name(sockets, b"gone.sock")
    assert len(gone) == 1 and gone[0].deleted and gone[0].name_dir == str(work)
    replaced = by_name(sockets, b"replaced.sock")
    assert len(replaced) == 1 and replaced[0].deleted
    packets = [e.message for e in ImageDir(images).read_entries("SK_QUEUES")]
    senders = [p.sender for p in packets if p.HasField("sender")]
    assert b"s1.sock" in senders and len(senders) == 2, senders  # the third had none
    assert sum(len(p.scm) for p in packets) == 2
    for name in ("files.img", "sk-queues.img"):
        out = subprocess.run([crit, "decode", "-i", str(images / name)], capture_output=True)
        assert out.returncode == 0, f"crit cannot decode {name}: {out.stderr.decode()}"
        # hiber's JSON of it (senders, names with NULs) encodes back byte for byte
        decoded = tmp_path / f"{name}.json"
        decoded.write_bytes(run_hiber("decode", "--pretty", "-i", images / name,
                                      check=True).stdout)
        run_hiber("encode", "-i", decoded, "-o", tmp_path / name, check=True)
        assert (tmp_path / name).read_bytes() == (images / name).read_bytes(), name
    shown = run_hiber("show", images).stdout.decode()
    assert "listening on " + str(work / "listen.sock") in shown, shown
    # the dumped process is gone: its socket files stay, as after any crash
    assert (work / "listen.sock").exists() and not (work / "gone.sock").exists()
    restore(images)
    t.check()


def test_a_dump_that_lets_the_tree_run_changes_nothing(start_target, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    t = start_target("unixnamed", work)
    dump(t, tmp_path / "images", "-R")
    t.check()


def test_restored_named_sockets_dump_again(start_target, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    t = start_target("unixnamed", work)
    dump_and_kill(t, tmp_path / "first")
    restore(tmp_path / "first")
    dump_and_kill(t, tmp_path / "second")
    def described(images):
        # an accepted socket (or a stream client) comes back bound to no name:
        # it reported its listener's, which is taken (as with CRIU)
        return sorted((s.type, s.state, s.name if s.type == DGRAM or s.state != ESTABLISHED
                       else b"", s.deleted, s.name_dir) for s in unix_entries(images))
    assert described(tmp_path / "first") == described(tmp_path / "second")
    restore(tmp_path / "second")
    t.check()


def test_a_failed_restore_leaves_no_socket_file(start_target, tmp_path):
    """The listener is bound, then the deleted socket cannot be: the
    listener's file goes again with the rest."""
    work = tmp_path / "work"
    work.mkdir()
    t = start_target("unixnamed", work)
    images = tmp_path / "images"
    dump_and_kill(t, images)
    os.unlink(work / "listen.sock")
    (work / "gone.sock.hiber-sk-ghost").mkdir()  # in the way of the deleted file's dance
    (work / "gone.sock").mkdir()
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 1 and b"gone.sock" in result.stderr, result.stderr
    assert not (work / "listen.sock").exists()
    assert not os.path.exists(f"/proc/{t.pid}")


# ---- a program of the standard library -------------------------------------------

SERVER = """
import http.server, os, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {os.getpid()} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.UnixStreamServer):
    def get_request(self):
        request, _ = self.socket.accept()
        return request, ("local", 0)
server = Server(sys.argv[1], Handler)
print("READY", flush=True)
server.serve_forever()
"""


def get(path, what):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(f"GET {what} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode()


def test_an_http_server_on_a_unix_socket_serves_on(tmp_path):
    path = tmp_path / "http.sock"
    t = Target(sys.executable, ["-c", SERVER, path], tmp_path)
    try:
        t.wait_ready()
        assert f"hello from {t.pid} /before" in get(path, "/before")
        dump_and_kill(t, tmp_path / "images")
        restore(tmp_path / "images")
        assert f"hello from {t.pid} /after" in get(path, "/after")
        assert f"hello from {t.pid} /again" in get(path, "/again")
    finally:
        t.stop()


# ---- a peer outside the tree --------------------------------------------------------

OUTSIDE = """
import os, signal, socket, sys, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the child, killed by the dump, is reaped
name = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
server.bind(name)
pid = os.fork()
if pid == 0:
    os.setsid()  # a tree of its own
    server.close()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.connect(name)
    print(f"READY child={os.getpid()}", flush=True)
    while True:
        time.sleep(0.2)
        client.send(b"tick")
server.settimeout(60)
while True:
    print("got", server.recv(16).decode(), flush=True)
"""


def test_a_datagram_peer_outside_the_tree(tmp_path):
    """The child sends to a socket of its parent's: refused without
    --ext-unix-sk; with it, the restored child sends to that name again."""
    name = tmp_path / "outside.sock"
    parent = Target(sys.executable, ["-c", OUTSIDE, name], tmp_path)
    try:
        parent.wait_ready()
        child = int(parent.info["child"])
        result = run_hiber("dump", "-t", child, "-D", tmp_path / "refused", "-R")
        err = result.stderr.decode()
        assert result.returncode == 1 and err.count("\n") == 1, err
        assert f"PID {child} fd " in err and "--ext-unix-sk" in err, err
        images = tmp_path / "images"
        result = run_hiber("dump", "-t", child, "-D", images, "--ext-unix-sk")
        assert result.returncode == 0, result.stderr.decode()
        externs = [s for s in unix_entries(images) if s.uflags & 1]
        assert len(externs) == 1 and externs[0].name.rstrip(b"\0") == str(name).encode()
        restore_refused(images, "--ext-unix-sk")
        before = parent.output().count("got tick")
        restore(images, "--ext-unix-sk")
        deadline = time.monotonic() + 10
        while parent.output().count("got tick") < before + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert parent.output().count("got tick") >= before + 2, parent.output()
        assert name.exists()  # the outsider's file is left alone
    finally:
        try:
            os.kill(child, 9)
        except (ProcessLookupError, UnboundLocalError):
            pass
        parent.stop()


# ---- refused, never dropped ------------------------------------------------------------

def python_target(tmp_path, code):
    t = Target(sys.executable, ["-c", "import os, socket, time\n" + code +
                                "\nprint('READY', flush=True); time.sleep(120)"], tmp_path)
    t.wait_ready()
    return t


REFUSED = {
    "waiting with data": ("l = socket.socket(socket.AF_UNIX); l.bind({tmp!r} + '/l.sock'); "
                          "l.listen(1); c = socket.socket(socket.AF_UNIX); "
                          "c.connect({tmp!r} + '/l.sock'); c.send(b'early')",
                          "not accepted yet, with data sent already"),
    "waiting, client closed": ("l = socket.socket(socket.AF_UNIX); "
                               "l.bind({tmp!r} + '/l.sock'); l.listen(1); "
                               "c = socket.socket(socket.AF_UNIX); "
                               "c.connect({tmp!r} + '/l.sock'); c.close()",
                               "client was closed before it was accepted"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_cannot_come_back_is_refused(tmp_path, case):
    code, words = REFUSED[case]
    t = python_target(tmp_path, code.replace("{tmp!r}", repr(str(tmp_path))))
    try:
        result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-R")
        err = result.stderr.decode()
        assert result.returncode == 1 and err.count("\n") == 1, err
        assert f"PID {t.pid} fd " in err and words in err, err
        assert t.alive()
    finally:
        t.stop()


def test_a_connection_waiting_on_a_listener_outside_is_refused(tmp_path):
    path = str(tmp_path / "outside.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        t = python_target(tmp_path, f"c = socket.socket(socket.AF_UNIX); c.connect({path!r})")
        try:
            result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-R")
            err = result.stderr.decode()
            assert result.returncode == 1 and err.count("\n") == 1, err
            assert "waiting to be accepted by a listener that no process" in err, err
            assert t.alive()
        finally:
            t.stop()


def test_a_name_a_living_socket_holds_now_is_refused(start_target, tmp_path):
    """Another socket bound at the listener's path since the dump keeps it:
    the restore is refused, naming it, rather than stealing its name."""
    work = tmp_path / "work"
    work.mkdir()
    t = start_target("unixnamed", work)
    images = tmp_path / "images"
    dump_and_kill(t, images)
    os.unlink(work / "listen.sock")
    with socket.socket(socket.AF_UNIX) as squatter:
        squatter.bind(str(work / "listen.sock"))
        restore_refused(images, "listen.sock", "a living socket is bound now")
        assert (work / "listen.sock").exists()
        assert not os.path.exists(f"/proc/{t.pid}")


# ---- the same images as CRIU's ------------------------------------------------------

GOLDEN_UNIX = REPO / "tests" / "data" / "golden" / "criu-4.2"


def _described_as_criu(entries, packets):
    """What a dump says of each unix socket and queued message, without the
    numbers that differ from run to run (inodes, file ids): each peer is
    named by what it is."""
    by_ino = {e["ino"]: e for e in entries}

    def what(e):
        return (e["type"], e["state"], e["name"], e.get("shutdown", "NONE"),
                e.get("deleted", False), e.get("name_dir", ""), e["uflags"],
                oct(e["file_perms"]["mode"]) if "file_perms" in e else "")

    described = sorted(what(e) + (what(by_ino[e["peer"]]) if e["peer"] else (),)
                       for e in entries)
    by_id = {e["id"]: e for e in entries}
    queued = sorted((what(by_id[p["id_for"]]), p["length"], len(p.get("scm", [])))
                    for p in packets if p["id_for"] in by_id)
    return described, queued


def _golden_json(name):
    return json.loads((GOLDEN_UNIX / "unix" / "decoded" / f"{name}.json").read_text())


def test_hiber_writes_the_unix_sockets_criu_wrote(tmp_path):
    """The program CRIU 4.2 dumped for the golden images, dumped by hiber:
    the same sockets, peers, names and queues (tests/data/golden)."""
    os.makedirs("/tmp/golden", exist_ok=True)
    binary = tmp_path / "unix"
    subprocess.run(["gcc", "-O1", "-o", binary, GOLDEN_UNIX / "unix.c"], check=True,
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    parent = Target(binary, [], tmp_path)
    child = None
    try:
        deadline = time.monotonic() + 10
        while "ready" not in parent.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(parent.output().split()[1])
        images = tmp_path / "images"
        result = run_hiber("dump", "-t", child, "-D", images, "-R", "--ext-unix-sk")
        assert result.returncode == 0, result.stderr.decode()
        ours = {}
        for name in ("files.img", "sk-queues.img"):
            ours[name] = json.loads(run_hiber("decode", "--pretty", "-i", images / name,
                                              check=True).stdout)
        theirs = {name: _golden_json(name) for name in ("files.img", "sk-queues.img")}
        described = [_described_as_criu([e["usk"] for e in d["files.img"]["entries"]
                                          if e["type"] == "UNIXSK"],
                                         d["sk-queues.img"]["entries"])
                     for d in (ours, theirs)]
        assert described[0] == described[1]
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        parent.stop()


MANY_FROM_ITS_PEER = """
import os, signal, socket, sys
os.chdir(sys.argv[1])
peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); peer.bind("p.sock")
reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); reader.bind("r.sock")
reader.connect("p.sock")
for i in range(40):  # more than net.unix.max_dgram_qlen: it takes them from its peer
    peer.sendto(b"m%d" % i, "r.sock")
signal.signal(signal.SIGUSR1, lambda *_: None)
print("READY", flush=True)
signal.pause()
reader.setblocking(False)
got = []
try:
    while True:
        got.append(reader.recvfrom(100))
except BlockingIOError:
    pass
ok = [d for d, _ in got] == [b"m%d" % i for i in range(40)] and \\
    all(a == "p.sock" for _, a in got)
print("PASS" if ok else f"FAIL {got[:3]} ({len(got)})", flush=True)
"""


def test_datagrams_from_its_peer_beyond_the_queue_limit(tmp_path):
    t = Target(sys.executable, ["-c", MANY_FROM_ITS_PEER, tmp_path], tmp_path)
    try:
        t.wait_ready()
        dump_and_kill(t, tmp_path / "images")
        restore(tmp_path / "images")
        os.kill(t.pid, signal.SIGUSR1)
        assert t.wait(10) == 0 and "PASS" in t.output(), t.output()
    finally:
        t.stop()


def test_an_abstract_name_taken_since_is_refused(tmp_path):
    name = f"\0hiber-taken-{os.getpid()}"
    t = python_target(tmp_path, f"s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
                                f"s.bind({name!r})")
    try:
        dump_and_kill(t, tmp_path / "images")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as taker:
            taker.bind(name)
            restore_refused(tmp_path / "images", "cannot bind it to @hiber-taken",
                            "Address already in use")
        assert not os.path.exists(f"/proc/{t.pid}")
    finally:
        t.stop()
