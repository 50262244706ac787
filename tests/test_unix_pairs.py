"""Unix socket pairs: both ends in the tree, each type, split between
processes or in one, with data queued both ways, shut down halves and
options, come back working (resources/sockets/unix.py); what hiber cannot
restore of sockets is refused in one line, the tree left running."""

import os
import subprocess
import sys

import pytest

from conftest import Target, dump, dump_and_kill, restore, restore_refused, run_hiber
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(180)

STREAM, DGRAM, SEQPACKET = 1, 2, 5


def unix_entries(images):
    return [f for f in ImageDir(images).read_optional("FILES") if f.HasField("usk")]


def queued(images):
    """file id -> [bytes of each message], in order."""
    out = {}
    for e in ImageDir(images).read_entries("SK_QUEUES"):
        out.setdefault(e.message.id_for, []).append(e.extra or b"")
    return out


def test_pairs_come_back_with_their_queues(start_target, tmp_path, crit):
    t = start_target("unixpairs")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    sockets = unix_entries(images)
    # 3 inner, 3 split, 3 half pairs, the shared one and the bulk one
    assert len(sockets) == 22
    by_ino = {f.usk.ino: f for f in sockets}
    assert all(by_ino[f.usk.peer].usk.peer == f.usk.ino for f in sockets)
    assert sorted(f.usk.type for f in sockets).count(DGRAM) == 6
    messages = queued(images)
    lengths = sorted(tuple(len(m) for m in messages.get(f.id, [])) for f in sockets
                     if f.usk.type == SEQPACKET)
    assert (5, 0, 100000, 5) in lengths      # message boundaries, the empty one too
    assert (3, 0) in lengths                 # an empty message just before the end
    half = [f for f in sockets if f.usk.shutdown]
    assert sorted(f.usk.shutdown for f in half) == [1, 1, 2, 2, 2]  # dgram: no mirror
    bulk = [f for f in sockets if sum(map(len, messages.get(f.id, []))) == 1000000]
    assert len(bulk) == 1 and bulk[0].usk.type == STREAM
    for name in ("files.img", "sk-queues.img"):
        out = subprocess.run([crit, "decode", "-i", str(images / name)], capture_output=True)
        assert out.returncode == 0, f"crit cannot decode {name}: {out.stderr.decode()}"
        # and hiber's JSON of it (crit's, names and payloads) encodes back byte for byte
        decoded = tmp_path / f"{name}.json"
        decoded.write_bytes(run_hiber("decode", "--pretty", "-i", images / name,
                                      check=True).stdout)
        run_hiber("encode", "-i", decoded, "-o", tmp_path / name, check=True)
        assert (tmp_path / name).read_bytes() == (images / name).read_bytes(), name
    shown = run_hiber("show", images).stdout.decode()
    assert "unix seqpacket socket:[" in shown and "shut down for writing" in shown, shown
    restore(images)
    t.check()


def test_a_dump_that_lets_the_tree_run_takes_nothing_from_the_queues(start_target, tmp_path):
    t = start_target("unixpairs")
    dump(t, tmp_path / "images", "-R")
    t.check()


def test_restored_pairs_dump_again(start_target, tmp_path):
    """A restored tree is dumped again to the same queues."""
    t = start_target("unixpairs")
    dump_and_kill(t, tmp_path / "first")
    restore(tmp_path / "first")
    dump_and_kill(t, tmp_path / "second")
    first, second = queued(tmp_path / "first"), queued(tmp_path / "second")
    assert sorted(map(tuple, first.values())) == sorted(map(tuple, second.values()))
    restore(tmp_path / "second")
    t.check()


# ---- refused, never dropped ---------------------------------------------------

def python_target(tmp_path, code):
    t = Target(sys.executable, ["-c", "import os, socket, time\n" + code +
                                "\nprint('READY', flush=True); time.sleep(120)"], tmp_path)
    t.wait_ready()
    return t


def refused(tmp_path, t):
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-R")
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1, err
    assert t.alive()
    return err


REFUSED = {
    "urgent": ("a, b = socket.socketpair(); a.send(b'u', socket.MSG_OOB)",
               "out-of-band byte (MSG_OOB)"),
    "inet": ("l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); "
             "c = socket.create_connection(l.getsockname()); a = l.accept()",
             "is a connected TCP socket: give --tcp-established"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_cannot_come_back_is_refused(tmp_path, case):
    code, words = REFUSED[case]
    t = python_target(tmp_path, code.replace("{tmp!r}", repr(str(tmp_path))))
    try:
        err = refused(tmp_path, t)
        assert f"PID {t.pid} fd " in err and words in err, err
    finally:
        t.stop()


def test_a_peer_outside_the_tree_is_refused(tmp_path):
    """The dumped child's peer stays with its parent, outside the tree."""
    code = ("a, b = socket.socketpair()\n"
            "if os.fork() == 0:\n"
            "    a.close(); print(f'READY child={os.getpid()}', flush=True); time.sleep(120)\n"
            "b.close(); time.sleep(120)")
    parent = Target(sys.executable, ["-c", "import os, socket, time\n" + code], tmp_path)
    try:
        parent.wait_ready()
        child = int(parent.info["child"])
        result = run_hiber("dump", "-t", child, "-D", tmp_path / "images", "-R")
        err = result.stderr.decode()
        assert result.returncode == 1 and err.count("\n") == 1, err
        assert f"PID {child} fd " in err and "no process of the tree holds" in err, err
        os.kill(child, 0)  # still there
    finally:
        parent.stop()


def test_images_of_foreign_or_lone_sockets_are_refused(start_target, tmp_path):
    t = start_target("unixpairs")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    d = ImageDir(images)
    files = list(d.read_optional("FILES"))
    original = [f.SerializeToString() for f in files]  # to edit afresh
    sockets = [f for f in files if f.HasField("usk")]

    sockets[0].usk.uflags = 0x4  # CRIU's USK_CALLBACK: a plugin's socket
    d.write("FILES", None, files)
    restore_refused(images, f"file #{sockets[0].id}", "CRIU's own or inherited")

    files = [type(sockets[0]).FromString(b) for b in original]
    lone = next(f for f in files if f.HasField("usk"))
    lone.usk.peer = 12345
    d.write("FILES", None, files)
    restore_refused(images, f"file #{lone.id}", "no socket:[12345], its peer")
