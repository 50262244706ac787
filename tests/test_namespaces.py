"""A tree in UTS and IPC namespaces of its own comes back in new ones, with
its host and domain names and its SysV objects (ids, keys, owners, data);
nested namespaces are refused in one line, leaving the tree running."""

import os
import socket

from conftest import dump, restore, run_hiber
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
