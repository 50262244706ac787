"""Netlink and packet sockets (resources/sockets/netlink.py, packet.py):
bound, unbound, connected, with groups beyond the address's 32, and packet
sockets with their SOL_PACKET options, membership and fanout group, come
back as they were and work on (the program checks itself)."""

import subprocess
import sys

import pytest

from conftest import TARGETS_SRC, Target, dump, dump_and_kill, restore, run_hiber
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def netsockets(tmp_path):
    t = Target(sys.executable, [TARGETS_SRC / "netsockets.py"], tmp_path)
    try:
        t.wait_ready()
        yield t
    finally:
        t.stop()


def test_netlink_and_packet_sockets_come_back(netsockets, tmp_path, crit):
    t = netsockets
    images = tmp_path / "images"
    dump_and_kill(t, images)
    files = ImageDir(images).read("FILES")
    netlink = [f.nlsk for f in files if f.HasField("nlsk")]
    packet = [f.psk for f in files if f.HasField("psk")]
    assert len(netlink) == 5 and len(packet) == 2
    assert any(n.portid == t.pid for n in netlink)
    assert any(n.state == 1 and n.dst_portid == t.pid and n.dst_group == 31 for n in netlink)
    assert any(p.fanout == 0x1234 and p.version == 1 and p.aux_data and len(p.mclist) == 1
               for p in packet)
    out = subprocess.run([crit, "decode", "-i", str(images / "files.img")], capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    assert "netlink socket" in run_hiber("show", images).stdout.decode()
    restore(images)
    t.check()


def test_a_dump_that_lets_the_tree_run_leaves_them_working(netsockets, tmp_path):
    dump(netsockets, tmp_path / "images", "-R")
    netsockets.check()
