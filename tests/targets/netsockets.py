"""Netlink and packet sockets held across a checkpoint, checked by the
program itself after the check signal (SIGRTMIN+1): prints READY, then
PASS or FAIL lines.

    ssk  netlink (KOBJECT_UEVENT) bound to the PID as port id
    bsk  netlink bound to an automatic port id, member of group 31
    csk  netlink connected to ssk's port and group 31
    usk  netlink never bound
    rtk  NETLINK_ROUTE, bound, member of group 33 (beyond the 32 an address
         can carry): asked for the links after restore
    pk1  packet raw socket (ETH_P_ALL), TPACKET_V2, aux data, a multicast membership
         on lo, a fanout group
    pk2  packet datagram socket (ETH_P_IP) bound to lo, reserve 64, O_NONBLOCK
"""

import fcntl
import os
import signal
import socket
import struct
import time

NETLINK_ADD_MEMBERSHIP, NETLINK_LIST_MEMBERSHIPS, SOL_NETLINK = 1, 9, 270
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_AUXDATA = 263, 1, 8
PACKET_VERSION, PACKET_RESERVE, PACKET_FANOUT = 10, 12, 18
PACKET_MR_PROMISC = 1
FANOUT = 0x1234  # id 0x1234, PACKET_FANOUT_HASH (0)
failures = []


def expect(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL", what, flush=True)


def main():
    checked = []
    signal.signal(signal.SIGRTMIN + 1, lambda *_: checked.append(1))
    ssk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
    ssk.bind((os.getpid(), 0))
    bsk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
    bsk.bind((0, 1 << 30))
    csk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
    csk.connect((os.getpid(), 1 << 30))
    usk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
    rtk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    rtk.bind((0, 0))
    rtk.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 33)
    lo = socket.if_nametoindex("lo")
    pk1 = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
    pk1.setsockopt(SOL_PACKET, PACKET_VERSION, 1)
    pk1.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    pk1.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                   struct.pack("=iHH8s", lo, PACKET_MR_PROMISC, 0, b""))
    pk1.bind(("lo", 0))
    pk1.setsockopt(SOL_PACKET, PACKET_FANOUT, FANOUT)
    pk2 = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    pk2.bind(("lo", 0x0800))
    pk2.setsockopt(SOL_PACKET, PACKET_RESERVE, 64)
    pk2.setblocking(False)
    before = {name: s.getsockname() for name, s in
              (("ssk", ssk), ("bsk", bsk), ("csk", csk), ("rtk", rtk), ("pk2", pk2))}
    print("READY pid=%d" % os.getpid(), flush=True)
    while not checked:
        time.sleep(0.05)

    for name, s in (("ssk", ssk), ("bsk", bsk), ("csk", csk), ("rtk", rtk), ("pk2", pk2)):
        expect(s.getsockname() == before[name], f"{name} address {s.getsockname()} "
                                                 f"!= {before[name]}")
    expect(csk.getpeername() == (os.getpid(), 1 << 30), "csk peer")
    expect(usk.getsockname() == (0, 0), "usk unbound")
    groups = struct.unpack("=I", bsk.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 4))
    expect(groups == (1 << 30,), f"bsk groups {groups}")
    groups = struct.unpack("=2I", rtk.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 8))
    expect(groups == (0, 1), f"rtk groups {groups}")
    csk.send(struct.pack("=IHHII", 16, 0x1234, 0x301, 1, 0))
    ssk.settimeout(5)
    bsk.settimeout(5)
    expect(len(ssk.recv(100)) == 16, "ssk got csk's message")
    expect(len(bsk.recv(100)) == 16, "bsk got csk's multicast")
    # RTM_GETLINK dump: the kernel still answers the route socket
    rtk.send(struct.pack("=IHHIIBxxxiII", 32, 18, 0x301, 7, 0, 0, 0, 0, 0))
    rtk.settimeout(5)
    expect(len(rtk.recv(65536)) > 16, "route socket answered")
    expect(pk1.getsockopt(SOL_PACKET, PACKET_VERSION) == 1, "pk1 version")
    expect(pk1.getsockopt(SOL_PACKET, PACKET_AUXDATA) == 1, "pk1 aux data")
    expect(pk1.getsockopt(SOL_PACKET, PACKET_FANOUT) == FANOUT, "pk1 fanout")
    expect(pk1.getsockname()[0] == "lo", f"pk1 bound {pk1.getsockname()}")
    expect(pk1.proto == socket.htons(3) and pk2.proto == socket.htons(0x0800), "protocols")
    expect(pk2.getsockopt(SOL_PACKET, PACKET_RESERVE) == 64, "pk2 reserve")
    expect(fcntl.fcntl(pk2.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK, "pk2 O_NONBLOCK")
    print("FAILED %d" % len(failures) if failures else "PASS", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
