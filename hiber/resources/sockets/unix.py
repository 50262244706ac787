"""Unix sockets: stream, datagram and seqpacket; pairs, sockets bound to a
path or an abstract name or to nothing, listening (with the connections
waiting to be accepted), connected, unconnected, shut down; the data queued
in each, with the descriptors passed in it (SCM_RIGHTS).

Dump: sock_diag (kernel/sock_diag.py) names a socket's type, state, bound
name, peer, pending connections and shutdown; each socket becomes a UNIXSK
file entry (CRIU's unix_sk_entry: ino, peer's ino, type, state, open flags,
owner, options, name, shutdown, and for a path its file's mode and owner,
whether it was deleted since, the directory of a relative name:
unix_names.py), and what it has to read goes to sk-queues.img, keyed by its
file id (queues.py); the files passed in its queue are dumped as files of
the tree. Once every process is collected, the peers are checked: each must
be a socket of the tree, reachable again (connected back, or bound to a
name); a connection not accepted yet is tied to its listener (its peer
becomes the listener, as in CRIU's images); a datagram socket connected to
a named datagram socket outside the tree is kept, with --ext-unix-sk, as an
entry of that socket flagged external (USK_EXTERN), which the restore
connects to by name.

Restore (unix_connect.py) makes every unix socket of the tree at once, in
the root stub, in the order their names and connections need.

What comes back otherwise, as with CRIU: the credentials of a connection
(SO_PEERCRED) are those of the root stub that made it again, and so are
those a reader with SO_PASSCRED gets with each message queued back (CRIU
refuses such a queue); an accepted socket, or a connected stream client, is
not bound again to the name it reports (an accepted socket shares its
listener's). A queued datagram keeps its sender's address when the sender
is a socket of the tree (CRIU keeps none); one from outside the tree comes
back from a socket bound to nothing.

Refused, in one line naming the socket: a peer outside the tree (but a
named datagram one with --ext-unix-sk), a connection waiting to be accepted
that has sent data already, or whose client was closed, out-of-band data
queued, a socket filter, a passed file hiber cannot dump.
"""

import logging
import os
import socket
from dataclasses import dataclass

from ...images.messages import classes
from ...kernel import proc, sock_diag
from ...kernel.sock_diag import RCV_SHUTDOWN, SEND_SHUTDOWN, TCP_CLOSE, TCP_ESTABLISHED, \
    TCP_LISTEN
from ..files.common import O_CLOEXEC, UnsupportedFile
from ..files.table import FD_TYPES, Kind
from .common import family_of, is_socket, socket_of, type_in_words
from .options import check_options, dump_options
from .queues import QueuedMessages, check_packets, peek_queue, rights_of
from .unix_connect import USK_EXTERN, UnixImages, is_external, make_all, where_of
from .unix_names import check_name, describe_file, is_path, name_in_words

UNIX_TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET)
UNIX_STATES = (TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN)
BOTH_SHUTDOWN = RCV_SHUTDOWN | SEND_SHUTDOWN
SHUTDOWN_WORDS = {RCV_SHUTDOWN: "shut down for reading", SEND_SHUTDOWN: "shut down for writing",
                  BOTH_SHUTDOWN: "shut down"}


log = logging.getLogger(__name__)


def is_unix_socket(fd):
    return is_socket(fd) and family_of(fd) == socket.AF_UNIX


# ---- dump ------------------------------------------------------------------------

@dataclass
class Dumped:
    file_id: int
    diag: sock_diag.UnixSocket
    where: str


class DumpedUnix:
    """The dump's unix sockets, checked together once every process is
    collected; their queues, written to sk-queues.img."""

    def __init__(self, table):
        self.table = table
        self.sockets = {}     # inode -> Dumped
        self.queues = QueuedMessages()
        # hiber's copies of the descriptors passed in queues: open until the
        # dump ends, so that kcmp keeps telling them apart (FileTable)
        self.passed_fds = []
        self.externs = {}     # inode of a peer outside the tree -> its file id

    def entry(self, dumped):
        return self.table.entries[dumped.file_id - 1].usk

    def dump_passed(self, where):
        def dump(fds):
            ids = []
            for n in fds:
                self.passed_fds.append(n)
                try:
                    file_id, _ = self.table.describe_fd(os.getpid(), n,
                                                        proc.fdinfo(os.getpid(), n))
                except UnsupportedFile as e:
                    raise UnsupportedFile(f"{where} has a file queued in it (SCM_RIGHTS) that "
                                          f"hiber cannot dump: {e}") from None
                ids.append(file_id)
            return ids
        return dump

    def finish(self):
        for n in self.passed_fds:
            os.close(n)
        self.passed_fds.clear()
        listeners = {ino: d for d in self.sockets.values() if d.diag.state == TCP_LISTEN
                     for ino in d.diag.pending}
        for d in list(self.sockets.values()):
            me = d.diag
            if me.peer:
                self._check_peer(d)
            elif me.state == TCP_ESTABLISHED and me.type != socket.SOCK_DGRAM:
                self._tie_to_listener(d, listeners.get(me.ino))
            elif me.state == TCP_LISTEN:
                self._check_pending(d)

    def _check_pending(self, d):
        me = d.diag
        if 0 in me.pending:
            raise UnsupportedFile(f"{d.where} is a unix socket listening on "
                                  f"{name_in_words(me.name)} with a connection whose client "
                                  "was closed before it was accepted: hiber cannot dump it "
                                  "(nor can CRIU)")
        outside = [ino for ino in me.pending if ino not in self.sockets]
        if outside:
            # as CRIU: the listener is dumped; those clients find their
            # connection gone once the dumped listener is
            log.warning("%s: %d connection(s) waiting to be accepted come from sockets "
                        "outside the tree (%s) and are not dumped", d.where, len(outside),
                        ", ".join(f"socket:[{ino}]" for ino in outside))

    def _check_peer(self, d):
        me = d.diag
        peer = self.sockets.get(me.peer)
        if peer is None:
            self._external_peer(d)
        elif peer.diag.peer != me.ino and not peer.diag.name:
            raise UnsupportedFile(f"{d.where} is a unix socket connected to socket:[{me.peer}],"
                                  " which is neither connected back to it nor bound to a name:"
                                  " hiber cannot connect them again")

    def _tie_to_listener(self, d, listener):
        """A stream or seqpacket socket connected to nothing: a connection
        its ``listener`` has not accepted yet (it names it among its pending
        ones), or one whose peer was closed (both directions shut down then,
        unix_release_sock)."""
        me = d.diag
        if listener is not None:
            if me.wqueue:
                raise UnsupportedFile(f"{d.where} is a unix socket connected to "
                                      f"{name_in_words(listener.diag.name)} and not accepted "
                                      "yet, with data sent already: hiber cannot dump data "
                                      "queued for a connection not accepted (nor can CRIU)")
            self.entry(d).peer = listener.diag.ino
        elif me.shutdown != BOTH_SHUTDOWN:
            raise UnsupportedFile(f"{d.where} is a unix {type_in_words(me.type)} socket waiting "
                                  "to be accepted by a listener that no process of the tree "
                                  "holds: hiber cannot dump half of a connection")

    def _external_peer(self, d):
        me = d.diag
        outside = sock_diag.unix_socket(me.peer)
        words = f"socket:[{me.peer}]"
        if outside is not None and outside.name:
            words += f" ({name_in_words(outside.name)})"
        if me.type != socket.SOCK_DGRAM or outside is None or \
                outside.type != socket.SOCK_DGRAM:
            raise UnsupportedFile(f"{d.where} is a unix socket whose peer {words} no process of "
                                  "the tree holds: hiber cannot dump half of a connection")
        if not outside.name:
            raise UnsupportedFile(f"{d.where} is a unix datagram socket connected to {words}, "
                                  "which no process of the tree holds and which has no name "
                                  "to connect to again")
        if not self.table.options.ext_unix_sk:
            raise UnsupportedFile(f"{d.where} is a unix datagram socket connected to {words}, "
                                  "which no process of the tree holds: re-run with "
                                  "--ext-unix-sk to connect it to that name again at restore")
        if outside.ino not in self.externs:
            entry = classes["unix_sk_entry"](
                id=0, ino=outside.ino, type=socket.SOCK_DGRAM, state=TCP_LISTEN, flags=0,
                uflags=USK_EXTERN, backlog=0, peer=0, name=outside.name,
                fown=classes["fown_entry"](uid=0, euid=0, signum=0, pid_type=0, pid=0),
                opts=classes["sk_opts_entry"](so_sndbuf=0, so_rcvbuf=0, so_snd_tmo_sec=0,
                                              so_snd_tmo_usec=0, so_rcv_tmo_sec=0,
                                              so_rcv_tmo_usec=0))
            self.externs[outside.ino] = self.table.add(KIND, entry)

    def write_images(self, images):
        self.queues.write_images(images)


def dump_fd(table, fd):
    where = f"PID {fd.pid} fd {fd.fd} ({fd.link})"
    dumped = table.state(KIND, lambda: DumpedUnix(table))
    known = dumped.sockets.get(fd.info.st_ino)
    if known is not None:  # a socket is one open file: passed in its own queue
        return known.file_id
    me = sock_diag.unix_socket(fd.info.st_ino)
    if me is None:
        if not sock_diag.unix_diag_works():
            raise UnsupportedFile(f"{where} is a unix socket, and this kernel does not "
                                  "describe unix sockets through sock_diag "
                                  "(CONFIG_UNIX_DIAG): hiber cannot dump it")
        raise UnsupportedFile(f"{where} is a unix socket of another network namespace: "
                              "hiber cannot dump it")
    if me.type not in UNIX_TYPES:
        raise UnsupportedFile(f"{where} is a unix socket of {type_in_words(me.type)}: hiber "
                              "dumps stream, datagram and seqpacket ones only")
    if me.state not in UNIX_STATES:
        raise UnsupportedFile(f"{where} is a unix socket in state {me.state}: hiber cannot "
                              "dump it")
    entry = classes["unix_sk_entry"](
        id=0, ino=me.ino, type=me.type, state=me.state, flags=fd.flags & ~O_CLOEXEC,
        uflags=0, backlog=me.wqueue, peer=me.peer, fown=fd.owner(), name=me.name)
    with socket_of(fd) as sock:
        entry.opts.CopyFrom(dump_options(sock, where))
        if is_path(me.name):
            (mode, uid, gid), deleted, name_dir = describe_file(sock.fileno(), me.name, where)
            entry.file_perms.mode, entry.file_perms.uid, entry.file_perms.gid = mode, uid, gid
            if deleted:
                entry.deleted = True
            if name_dir is not None:
                entry.name_dir = name_dir
    if me.shutdown:
        entry.shutdown = me.shutdown
    if table.net_ns_id:
        entry.ns_id = table.net_ns_id
    file_id = table.add(KIND, entry)
    dumped.sockets[me.ino] = Dumped(file_id, me, where)
    # a listener's queue holds connections, not data; a stream or seqpacket
    # socket not connected has none (and recvmsg refuses it)
    if me.type == socket.SOCK_DGRAM or me.state == TCP_ESTABLISHED:
        with socket_of(fd) as sock:
            messages = peek_queue(sock, where, dumped.dump_passed(where))
        dumped.queues.add(file_id, messages)
    return file_id


# ---- restore: the checks (unix_connect.py makes them) ------------------------------

def check(files, entry):
    """What could not be made again, refused in one line."""
    _check(files, entry, set())
    if is_external(entry):
        raise UnsupportedFile(f"{where_of(entry)} is a socket outside the tree (external): "
                              "no fd can hold it")


def _check(files, entry, seen):
    if entry.id in seen:
        return
    seen.add(entry.id)
    usk, where = entry.usk, where_of(entry)
    if usk.uflags & ~USK_EXTERN:
        raise UnsupportedFile(f"{where} is CRIU's own or inherited (uflags {usk.uflags:#x}): "
                              "hiber cannot restore it")
    if usk.type not in UNIX_TYPES or usk.state not in UNIX_STATES:
        raise UnsupportedFile(f"{where} is of type {usk.type}, state {usk.state}: hiber "
                              "restores stream, datagram and seqpacket sockets only")
    check_name(entry, where)
    if is_external(entry):
        if not usk.name:
            raise UnsupportedFile(f"{where} is external and has no name to connect to")
        if not files.options.ext_unix_sk:
            raise UnsupportedFile(f"{where} is a socket outside the tree, "
                                  f"{name_in_words(usk.name)}, which its peers connect to "
                                  "again: re-run with --ext-unix-sk to allow it")
        return
    check_options(usk.opts, where)
    if usk.peer:
        _check_peer(files, entry, seen)
    packets = files.data(KIND).packets(entry)
    check_packets(packets, where)
    for packet, _ in packets:
        for file_id in rights_of(packet):
            passed = files.entry(file_id)
            if passed.HasField("usk"):
                _check(files, passed, seen)
            else:
                files.check([file_id])  # by its own kind


def _check_peer(files, entry, seen):
    usk, where = entry.usk, where_of(entry)
    peer = files.data(KIND).entry(files, usk.peer)
    if peer is None:
        raise UnsupportedFile(f"{where}: the images have no socket:[{usk.peer}], its peer: "
                              "hiber cannot restore a connection with an end outside the "
                              "tree")
    _check(files, peer, seen)
    if peer.usk.peer == usk.ino and peer is not entry:
        if peer.usk.type != usk.type:
            raise UnsupportedFile(f"{where} and its peer socket:[{usk.peer}] are of different "
                                  "types")
        return
    if usk.type != socket.SOCK_DGRAM and peer.usk.state != TCP_LISTEN:
        raise UnsupportedFile(f"{where} is connected to socket:[{usk.peer}], which is neither "
                              "connected back to it nor listening")
    if not peer.usk.name:
        raise UnsupportedFile(f"{where} is connected to socket:[{usk.peer}], which is not "
                              "connected back to it and has no name to connect to")


def open_socket(stub, entry):
    made = stub.state(KIND, lambda: make_all(stub, stub.files.data(KIND)))
    return made[entry.id]


def label(entry):
    usk = entry.usk
    if is_external(entry):
        return f"unix socket outside the tree, {name_in_words(usk.name)}"
    words = f"unix {type_in_words(usk.type)} socket:[{usk.ino}]"
    if usk.state == TCP_LISTEN:
        words += f", listening on {name_in_words(usk.name)}"
    elif usk.name:
        words += f", {'deleted, ' if usk.deleted else ''}bound to {name_in_words(usk.name)}"
    if usk.peer:
        words += f", connected to socket:[{usk.peer}]"
    if usk.shutdown:
        words += f", {SHUTDOWN_WORDS.get(usk.shutdown, 'shut down')}"
    return words


KIND = Kind(name="unix socket", fd_type=FD_TYPES["UNIXSK"], entry_field="usk",
            match=is_unix_socket, dump=dump_fd, check=check, open=open_socket, label=label,
            read_images=UnixImages)
