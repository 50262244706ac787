"""Inet sockets (IPv4 and IPv6: TCP, UDP, UDP-Lite, ICMP ping and raw), as
CRIU 4.2 keeps them in an INETSK file entry (inet_sk_entry): family, type,
protocol, state, addresses and ports, listen backlog, shutdown, and the
socket, IP and TCP options.

What sock_diag says (kernel/inet_diag.py) gives the state, the queues and
the shutdown bits of a socket the kernel has hashed (bound, listening or
connected); one it does not list is a socket nobody bound yet, described
from getsockname() as CRIU does. As with CRIU: datagrams waiting in a UDP
socket are dropped (their senders see a loss, which UDP allows), a corked
UDP socket and a listener with connections not accepted yet are refused,
and a TCP connection needs --tcp-established (tcp.py) or --tcp-close.

Restore makes the socket again, with SO_REUSEADDR and SO_REUSEPORT on while
the tree's sockets are being made (a listener and its accepted connections
share a port); each gets its own values back once all exist (install), a
connection once it leaves repair mode, the restore's last step
(finish_connections).
"""

import errno
import logging
import os
import select
import socket
import struct
import uuid

from ...images.messages import classes
from ...kernel import inet_diag, netns
from ...kernel import tcp_repair as R
from ..files.common import (O_CLOEXEC, UnsupportedFile, borrow_fd, high_dup,
                            set_status_flags)
from ..files.table import FD_TYPES, Kind
from .common import is_socket, socket_of
from .inet_options import (IP_FREEBIND, IPV6_V6ONLY, SOL_IP, SOL_IPV6, dump_ip_options,
                           dump_tcp_options, restore_ip_options, restore_tcp_options)
from .options import check_options, dump_options, restore_options
from . import tcp
from .netlock import NetworkLock

log = logging.getLogger(__name__)

IPPROTO_UDPLITE = 136
SOL_UDP, UDP_CORK = 17, 1
SO_PEERNAME = 28
PROTOCOLS = {socket.IPPROTO_IP, socket.IPPROTO_TCP, socket.IPPROTO_UDP, IPPROTO_UDPLITE,
             socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6}
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2


def is_inet_socket(fd):
    if not is_socket(fd):
        return False
    with socket_of(fd) as sock:
        return sock.family in (socket.AF_INET, socket.AF_INET6)


class InetDump:
    """What a dump keeps beside the entries: sock_diag's answers, the
    connections in repair mode (with a duplicate of each, to turn repair off
    again if the tree runs on) and their streams, and the network lock."""

    def __init__(self, table):
        self.table = table
        self.diag = {}
        self.repaired = []      # (hiber's duplicate of a socket in repair mode,
                                #  its SO_REUSEADDR)
        self.streams = []       # (ino, tcp_stream_entry, bytes)
        self.lock = None
        self.run_id = None
        self.lock_namespaces = {}  # inode -> fd of each network namespace locked in

    def described(self, sock, sock_type, proto, ino):
        """What sock_diag says of a socket, asked in its network namespace
        (a tree may have one of its own)."""
        family = sock.family
        request = (family, socket.IPPROTO_RAW, proto) if sock_type == socket.SOCK_RAW else \
            (family, proto, 0)
        nsfd = netns.of_socket(sock.fileno())
        try:
            key = (os.fstat(nsfd).st_ino, request)
            if key not in self.diag:
                self.diag[key] = netns.call_in(nsfd, inet_diag.inet_sockets, *request)
        finally:
            os.close(nsfd)
        return self.diag[key].get(ino)

    def network_lock(self):
        if self.lock is None:
            self.run_id = str(uuid.uuid4())
            self.lock = NetworkLock(self.run_id, self.table.options.network_lock)
        return self.lock

    def write_images(self, images):
        for ino, entry, data in self.streams:
            images.write("TCP_STREAM", ino, [(entry, data)])

    def release(self, tree_killed):
        """At the end of a dump: a killed tree's sockets close in repair mode,
        silently, and the lock stays for the restore; otherwise they go back
        to work and the lock goes."""
        for sock, reuseaddr in self.repaired:
            if not tree_killed:
                try:
                    R.set_repair(sock, False)
                    # leaving repair mode clears SO_REUSEADDR (tcp.c: sk_reuse
                    # = SK_NO_REUSE): the program's value back
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuseaddr)
                except OSError:
                    pass
            sock.close()
        self.repaired.clear()
        for nsfd in self.lock_namespaces.values():
            if self.lock is not None and not tree_killed:
                netns.call_in(nsfd, self.lock.unlock)
            os.close(nsfd)
        self.lock_namespaces.clear()


def release_connections(table, tree_killed):
    """dump.py's call once the dump's outcome is known (see InetDump.release)."""
    table.state(KIND, lambda: InetDump(table)).release(tree_killed)


def annotate_inventory(table, inventory):
    """What the restore must know of the dump's connections: the lock's
    table (named after the run id) and method, and --tcp-close."""
    state = table.state(KIND, lambda: InetDump(table))
    if table.options.tcp_close:
        inventory.tcp_close = True
    if state.lock is not None:
        inventory.dump_criu_run_id = state.run_id
        inventory.network_lock_method = state.lock.method


def _words(packed, family):
    """An address as the image keeps it: 32-bit words in network order."""
    size = 4 if family == socket.AF_INET else 16
    packed = (packed or b"").ljust(size, b"\0")[:size]
    return list(struct.unpack(f"={size // 4}I", packed))


def _name_of(address, family):
    """(packed address, port) of a getsockname()/getpeername() tuple."""
    return socket.inet_pton(family, address[0]), address[1]


def _peer_name(sock, family):
    """(packed address, port) of the peer, or (b"", 0). SO_PEERNAME, not
    getpeername(): the kernel answers it even for a connection closed since
    (inet_getname's peer == 2), as CRIU reads it."""
    try:
        # the length must not exceed the address the kernel has (or EINVAL)
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERNAME,
                              16 if family == socket.AF_INET else 28)
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise
        return b"", 0
    port = struct.unpack_from("!H", raw, 2)[0]
    return (raw[4:8], port) if family == socket.AF_INET else (raw[8:24], port)


def _undescribed(sock, fd, family, sock_type, proto):
    """A socket sock_diag does not list: not bound, or raw; CLOSE, with
    what getsockname() and SO_PEERNAME tell (CRIU's gen_uncon_sk)."""
    src, sport = _name_of(sock.getsockname(), family)
    dst, dport = _peer_name(sock, family)
    shutdown, backlog = 0, 0
    if sock_type != socket.SOCK_RAW and proto == socket.IPPROTO_TCP:
        state, _, _, _, backlog = R.tcp_info(sock)
        if state != R.CLOSE:
            raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} ({fd.link}): TCP state {state} "
                                  "but sock_diag does not list it")
        # shut down before it was connected: poll says so (CRIU's way)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLRDHUP | select.POLLHUP)
        events = dict(poller.poll(0)).get(sock.fileno(), 0)
        if events & select.POLLHUP and events & select.POLLRDHUP:
            shutdown = RCV_SHUTDOWN
    return inet_diag.InetSocket(fd.info.st_ino, family, R.CLOSE, sport, dport, src, dst,
                                0, backlog, shutdown)


def _check_dumpable(fd, me, sock_type, proto, sock, options):
    where = f"PID {fd.pid} fd {fd.fd} ({fd.link})"
    if sock_type == socket.SOCK_DGRAM:
        if proto in (socket.IPPROTO_UDP, IPPROTO_UDPLITE) and \
                sock.getsockopt(SOL_UDP, UDP_CORK):
            raise UnsupportedFile(f"{where} is a corked UDP socket (UDP_CORK): as criu, "
                                  "hiber cannot dump it")
        if me.rqueue:
            log.warning("%s: the datagrams waiting in it are dropped (as by criu)", where)
        return
    if sock_type not in (socket.SOCK_STREAM, socket.SOCK_RAW):
        raise UnsupportedFile(f"{where} is an inet socket of type {sock_type}: hiber dumps "
                              "stream, datagram and raw ones")
    if sock_type == socket.SOCK_RAW:
        return
    if me.state == R.LISTEN:
        if me.rqueue and not options.tcp_skip_in_flight:
            raise UnsupportedFile(f"{where} is a listening TCP socket with {me.rqueue} "
                                  "connection(s) not accepted yet: accept them first, or "
                                  "give --tcp-skip-in-flight to drop them")
    elif me.state in tcp.CONNECTED_STATES:
        if not options.tcp_established and not options.tcp_close:
            raise UnsupportedFile(f"{where} is a connected TCP socket: give "
                                  "--tcp-established to dump it (or --tcp-close)")
    elif me.state != R.CLOSE:
        raise UnsupportedFile(f"{where} is a TCP socket in state {me.state}, which hiber "
                              "cannot dump")


def _needs_scope(packed):
    """An IPv6 address a bind() needs an interface for: link-local, or a
    multicast one of link or node scope."""
    return (packed[0] == 0xfe and packed[1] & 0xc0 == 0x80) or \
        (packed[0] == 0xff and packed[1] & 0x0f in (1, 2))


def dump_fd(table, fd):
    where = f"PID {fd.pid} fd {fd.fd} ({fd.link})"
    state = table.state(KIND, lambda: InetDump(table))
    with socket_of(fd) as sock:
        family, sock_type, proto = sock.family, sock.type, sock.proto
        if sock_type != socket.SOCK_RAW and proto not in PROTOCOLS:
            raise UnsupportedFile(f"{where} is an inet socket of protocol {proto}, which "
                                  "neither criu nor hiber dumps (Go programs: "
                                  "GODEBUG=multipathtcp=0 turns MPTCP off)")
        me = state.described(sock, sock_type, proto, fd.info.st_ino)
        if me is None:
            me = _undescribed(sock, fd, family, sock_type, proto)
        _check_dumpable(fd, me, sock_type, proto, sock, table.options)
        entry = classes["inet_sk_entry"](
            ino=me.ino, family=family, type=sock_type, proto=proto, state=me.state,
            src_port=me.src_port, dst_port=me.dst_port, flags=fd.flags & ~O_CLOEXEC,
            backlog=me.wqueue, fown=fd.owner())
        entry.src_addr.extend(_words(me.src, family))
        entry.dst_addr.extend(_words(me.dst, family))
        if table.net_ns_id:
            entry.ns_id = table.net_ns_id
        if family == socket.AF_INET6:
            entry.v6only = bool(sock.getsockopt(SOL_IPV6, IPV6_V6ONLY))
            if me.src_port and _needs_scope(me.src):
                device = sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16)
                if not device.rstrip(b"\0"):
                    raise UnsupportedFile(f"{where} is bound to a link-local address "
                                          "without a device: hiber cannot bind it again")
                entry.ifname = device.rstrip(b"\0").decode()
        entry.ip_opts.CopyFrom(dump_ip_options(sock, family, sock_type, proto))
        entry.opts.CopyFrom(dump_options(sock, where))
        entry.tcp_opts.SetInParent()  # as CRIU: present, empty but for TCP
        if proto == socket.IPPROTO_TCP and sock_type != socket.SOCK_RAW:
            entry.tcp_opts.CopyFrom(dump_tcp_options(sock))
        if proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP, IPPROTO_UDPLITE) \
                and me.shutdown:
            entry.shutdown = me.shutdown
        if (proto == socket.IPPROTO_TCP and sock_type == socket.SOCK_STREAM
                and me.dst_port and not table.options.tcp_close):
            _dump_connection(state, sock, entry, me, where)
    return table.add(KIND, entry)


def _dump_connection(state, sock, entry, me, where):
    """Lock the connection's packets out, turn repair on and read it; the
    socket stays in repair mode (see tcp.py)."""
    # in the socket's network namespace: its packets go through that one's
    # nftables
    nsfd = netns.of_socket(sock.fileno())
    ino = os.fstat(nsfd).st_ino
    if ino in state.lock_namespaces:
        os.close(nsfd)
        nsfd = state.lock_namespaces[ino]
    state.lock_namespaces[ino] = nsfd  # unlocked there (release)
    netns.call_in(nsfd, state.network_lock().lock, me.family, me.src, me.src_port,
                  me.dst, me.dst_port)
    ours = sock.dup()
    try:
        R.set_repair(ours, True)
    except OSError as e:
        ours.close()
        raise UnsupportedFile(f"{where}: cannot turn TCP repair on: {e.strerror}") from None
    state.repaired.append((ours, int(entry.opts.reuseaddr)))
    try:
        entry.state, stream, data = tcp.dump_stream(ours, where)
    except OSError as e:
        raise UnsupportedFile(f"{where}: cannot read its TCP state: {e.strerror}") from None
    state.streams.append((me.ino, stream, data))


# ---- restore -----------------------------------------------------------------

def is_connection(isk):
    return isk.proto == socket.IPPROTO_TCP and isk.type == socket.SOCK_STREAM \
        and isk.dst_port != 0


class InetImages:
    """The streams of the images' TCP connections, by inode, and what the
    inventory says of the dump's lock and --tcp-close."""

    def __init__(self, images):
        self.streams = {}
        for key in images.keys("TCP_STREAM"):
            entries = images.read_entries("TCP_STREAM", key)
            if entries:
                self.streams[key] = (entries[0].message, entries[0].extra or b"")
        inventory = images.inventory()
        self.tcp_close = inventory.tcp_close
        self.run_id = inventory.dump_criu_run_id if inventory.HasField(
            "dump_criu_run_id") else None
        self.method = inventory.network_lock_method


def _where(entry):
    return f"file #{entry.id} (inet socket:[{entry.isk.ino}])"


def _closing(files):
    return files.options.tcp_close or files.data(KIND).tcp_close


def check(files, entry):
    isk = entry.isk
    where = _where(entry)
    if isk.family not in (socket.AF_INET, socket.AF_INET6):
        raise UnsupportedFile(f"{where}: family {isk.family} is not inet")
    if isk.type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW):
        raise UnsupportedFile(f"{where}: socket type {isk.type} cannot be restored")
    want = 1 if isk.family == socket.AF_INET else 4
    if len(isk.src_addr) < want or len(isk.dst_addr) < want:
        raise UnsupportedFile(f"{where}: its addresses are too short for its family")
    if is_connection(isk) and not _closing(files):
        if not files.options.tcp_established:
            raise UnsupportedFile(f"{where} is a connected TCP socket: give "
                                  "--tcp-established to restore it (or --tcp-close)")
        if isk.ino not in files.data(KIND).streams:
            raise UnsupportedFile(f"{where}: tcp-stream-{isk.ino:x}.img is missing (dumped "
                                  "with --tcp-close?): restore with --tcp-close")
    if isk.ifname:
        try:
            socket.if_nametoindex(isk.ifname)
        except OSError:
            raise UnsupportedFile(f"{where} was bound on device {isk.ifname}, which this "
                                  "machine does not have") from None
    check_options(isk.opts, where)


def _address(isk, words, port, ifindex=0):
    raw = struct.pack(f"={len(words)}I", *words)
    if isk.family == socket.AF_INET:
        return (socket.inet_ntop(socket.AF_INET, raw[:4]), port)
    return (socket.inet_ntop(socket.AF_INET6, raw[:16]), port, 0, ifindex)


def _bind(sock, isk):
    ifindex = socket.if_nametoindex(isk.ifname) if isk.ifname else 0
    freebind_for_now = False
    if isk.family == socket.AF_INET6 and isk.type != socket.SOCK_RAW:
        # a new IPv6 address is "tentative" for a while, and cannot be bound
        # to then without IP_FREEBIND
        sock.setsockopt(SOL_IP, IP_FREEBIND, 1)
        freebind_for_now = not isk.ip_opts.freebind
    sock.bind(_address(isk, isk.src_addr, isk.src_port, ifindex))
    if freebind_for_now:
        sock.setsockopt(SOL_IP, IP_FREEBIND, 0)


def open_socket(stub, entry):
    isk = entry.isk
    sock = socket.socket(isk.family, isk.type, isk.proto)
    try:
        if isk.v6only:
            sock.setsockopt(SOL_IPV6, IPV6_V6ONLY, 1)
        # on for now: sockets of the tree may share a port (see install)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if is_connection(isk):
            if _closing(stub.files):
                _closed(sock)
            else:
                stream, data = stub.files.data(KIND).streams[isk.ino]
                tcp.restore_stream(sock, isk, stream, data)
        else:
            # a ping socket is not bound again (as by criu: it picks its
            # ident when it sends); a raw one is, whatever its protocol
            if isk.src_port and (isk.type == socket.SOCK_RAW or isk.proto not in (
                    socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6)):
                _bind(sock, isk)
            if isk.state == R.LISTEN:
                sock.listen(isk.backlog)
            if isk.dst_port:
                sock.connect(_address(isk, isk.dst_addr, isk.dst_port))
        restore_ip_options(sock, isk)
        restore_options(sock, isk.opts)
        if isk.proto == socket.IPPROTO_TCP and isk.HasField("tcp_opts"):
            restore_tcp_options(sock, isk.tcp_opts)
        if isk.HasField("shutdown") and isk.shutdown and isk.proto in (
                socket.IPPROTO_UDP, IPPROTO_UDPLITE, socket.IPPROTO_TCP) \
                and not is_connection(isk):
            try:
                sock.shutdown(isk.shutdown - 1)  # READ 1, WRITE 2, BOTH 3 -> SHUT_*
            except OSError as e:
                if isk.state != R.CLOSE and e.errno != errno.ENOTCONN:
                    raise
        fd = high_dup(sock.detach(), stub.floor)
    finally:
        sock.close()
    set_status_flags(fd, isk.flags)
    return fd


def _closed(sock):
    """--tcp-close: the connection is not restored; its socket comes back
    shut down both ways (reads see the end, writes EPIPE)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise


def install(stub, entry, fd, fd_ids):
    """Once every socket of the tree exists: each but a connection (see
    leave_repair) gets its own SO_REUSEADDR/SO_REUSEPORT back."""
    isk = entry.isk
    if is_connection(isk) and not _closing(stub.files):
        return
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(isk.opts.reuseaddr))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(isk.opts.so_reuseport))
    finally:
        sock.close()


def finish_connections(plan, lock):
    """The restore's last step before the tree runs, as criu's: every
    connection leaves repair mode (a restore that fails before it leaves
    them in repair mode, and they close without a word) with its own
    SO_REUSEADDR/SO_REUSEPORT back (leaving repair mode clears the first),
    then the network lock goes, then each is pushed: what it queued while
    the lock dropped its packets (a FIN, say) goes out now, not at its next
    timer (TCP_NODELAY on pushes pending frames: tcp.c)."""
    held = []
    try:
        if not _closing(plan.files):
            for f, sock in _connections_of(plan):
                held.append((f, sock))
                R.set_repair(sock, False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,
                                int(f.isk.opts.reuseaddr))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT,
                                int(f.isk.opts.so_reuseport))
        if lock is not None:
            lock.unlock()
        for f, sock in held:
            nodelay = sock.getsockopt(R.SOL_TCP, R.TCP_NODELAY)
            sock.setsockopt(R.SOL_TCP, R.TCP_NODELAY, 1)
            sock.setsockopt(R.SOL_TCP, R.TCP_NODELAY, nodelay)
    finally:
        for _, sock in held:
            sock.close()


def _connections_of(plan):
    """(file entry, hiber's socket object of it) of each TCP connection of
    the restored tree, once each."""
    seen = set()
    for p in plan.live:
        for e in p.fdinfo:
            f = plan.files.entry(e.id)
            if e.id in seen or not f.HasField("isk") or not is_connection(f.isk):
                continue
            seen.add(e.id)
            with borrow_fd(p.pid, e.fd) as ours:
                yield f, socket.socket(fileno=os.dup(ours))


def connections(files):
    """(family, src, sport, dst, dport) of the images' connections, for the
    network lock."""
    out = []
    for f in files.by_id.values():
        if f.HasField("isk") and is_connection(f.isk):
            isk = f.isk
            out.append((isk.family, tcp._packed(isk.src_addr, isk.family), isk.src_port,
                        tcp._packed(isk.dst_addr, isk.family), isk.dst_port))
    return out


def restore_lock(files):
    """The network lock of a restore (None: no connection to keep): taken
    again (the dump's may be gone), released by the caller once the tree
    runs, or has failed."""
    data = files.data(KIND)
    conns = connections(files)
    if not conns or _closing(files) or data.run_id is None:
        return None
    lock = NetworkLock(data.run_id, {0: "iptables", 1: "nftables", 2: "skip"}.get(
        data.method, "nftables"))
    if files.options.network_lock:
        lock = NetworkLock(data.run_id, files.options.network_lock)
    if lock.method == 0:  # an image of criu's default, iptables, which is absent here
        lock = NetworkLock(data.run_id, "nftables")
    lock.lock_all(conns)
    return lock


def label(entry):
    isk = entry.isk
    family = "inet6" if isk.family == socket.AF_INET6 else "inet"
    src = _address(isk, isk.src_addr, isk.src_port)
    text = f"{family} socket:[{isk.ino}] (proto {isk.proto}, {src[0]}:{src[1]}"
    if isk.dst_port:
        dst = _address(isk, isk.dst_addr, isk.dst_port)
        text += f" -> {dst[0]}:{dst[1]}"
    return text + ")"


KIND = Kind(name="inet socket", fd_type=FD_TYPES["INETSK"], entry_field="isk",
            match=is_inet_socket, dump=dump_fd, check=check, open=open_socket,
            label=label, read_images=InetImages, install=install)
