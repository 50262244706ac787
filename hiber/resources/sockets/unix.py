"""Unix sockets made by socketpair(): both ends held by processes of the
tree, stream, datagram or seqpacket, with the data queued in each end, how
each end was shut down, and their options.

Dump: sock_diag (kernel/sock_diag.py) names a socket's type, state, bound
name, peer and shutdown; each end becomes a UNIXSK file entry (CRIU's
unix_sk_entry: ino, peer's ino, type, state, open flags, owner, options,
shutdown) and what it has to read goes to sk-queues.img, keyed by its file
id (queues.py). A pair's two ends are two open files: two entries, each
naming the other's inode. Once every process is collected, each end's peer
must have been dumped too (a peer no process of the tree holds could not
be made again).

Restore: in the root stub, the first end asked for makes the pair with
socketpair(); the other end waits, at a temporary number, for its own
file entry. Before either is handed out, each end gets back what it had to
read (sent from the other end, in order, messages whole), then its
options, its shutdown (after the data: a socket shut down for writing
sends nothing more) and its open flags.

What comes back otherwise, as with CRIU: the credentials of the pair
(SO_PEERCRED) are those of the root stub that made it again, and so are
those a reader with SO_PASSCRED gets with each message queued back.

Refused, in one line naming the socket: a unix socket bound to a name
(listening or not) or connected to one, one not connected, one whose peer
was closed or is held by no process of the tree, data with descriptors
(SCM_RIGHTS) or out-of-band data queued, a socket filter.
"""

import socket

from ...images.messages import classes
from ...kernel import sock_diag
from ...kernel.sock_diag import RCV_SHUTDOWN, SEND_SHUTDOWN, TCP_ESTABLISHED, TCP_LISTEN
from ..files.common import O_CLOEXEC, UnsupportedFile, high_dup, set_status_flags
from ..files.table import FD_TYPES, Kind
from .common import family_of, is_socket, socket_of, type_in_words
from .options import check_options, dump_options, make_room, restore_options
from .queues import QueuedMessages, peek_queue, read_queues, refill

PAIR_TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET)
# shutdown(2)'s "how" for the sk_shutdown bits of an end (SHUT_RD = 0,
# SHUT_WR = 1, SHUT_RDWR = 2: the bits less one); sk_shutdown READ = 1,
# WRITE = 2, BOTH = 3 are the kernel's RCV_SHUTDOWN/SEND_SHUTDOWN bits
SHUTDOWN_HOW = {RCV_SHUTDOWN: socket.SHUT_RD, SEND_SHUTDOWN: socket.SHUT_WR,
                RCV_SHUTDOWN | SEND_SHUTDOWN: socket.SHUT_RDWR}
SHUTDOWN_WORDS = {RCV_SHUTDOWN: "shut down for reading", SEND_SHUTDOWN: "shut down for writing",
                  RCV_SHUTDOWN | SEND_SHUTDOWN: "shut down"}


def is_unix_socket(fd):
    return is_socket(fd) and family_of(fd) == socket.AF_UNIX


# ---- dump ------------------------------------------------------------------------

def _name_in_words(name):
    name = name.rstrip(b"\0") if name[:1] != b"\0" else name
    shown = name.decode(errors="backslashreplace")
    return "@" + shown[1:] if shown.startswith("\0") else shown


def _refuse_unless_pair_end(me, where):
    """Refuse, in words, a unix socket that is not one end of a pair."""
    if me.name:
        what = "listening on" if me.state == TCP_LISTEN else "bound to"
        raise UnsupportedFile(f"{where} is a unix socket {what} {_name_in_words(me.name)}: "
                              "hiber cannot dump named unix sockets yet")
    if me.state == TCP_LISTEN:
        raise UnsupportedFile(f"{where} is a listening unix socket: hiber cannot dump "
                              "listening unix sockets yet")
    if me.type not in PAIR_TYPES:
        raise UnsupportedFile(f"{where} is a unix socket of {type_in_words(me.type)}: hiber "
                              "dumps stream, datagram and seqpacket ones only")
    if not me.peer:
        if me.state == TCP_ESTABLISHED:
            raise UnsupportedFile(f"{where} is a unix socket whose peer was closed: hiber "
                                  "cannot dump such sockets yet")
        raise UnsupportedFile(f"{where} is a unix socket connected to nothing: hiber dumps "
                              "the ends of socket pairs only, for now")


def _check_peer(me, peer, where):
    if peer is None or peer.peer != me.ino:
        raise UnsupportedFile(f"{where} is a unix socket connected to socket:[{me.peer}], "
                              "which is not connected back to it: hiber dumps the ends of "
                              "socket pairs only, for now")
    if peer.name:
        raise UnsupportedFile(f"{where} is a unix socket connected to one bound to "
                              f"{_name_in_words(peer.name)}: hiber cannot dump named unix "
                              "sockets yet")
    # a stream or seqpacket end shut down for writing leaves its peer shut
    # down for reading and the other way round (unix_shutdown): a restore
    # brings back pairs that agree
    mirrored = ((peer.shutdown & RCV_SHUTDOWN) and SEND_SHUTDOWN) | \
        ((peer.shutdown & SEND_SHUTDOWN) and RCV_SHUTDOWN)
    if me.type != socket.SOCK_DGRAM and me.shutdown != mirrored:
        raise UnsupportedFile(f"{where} is a unix socket shut down otherwise than its peer "
                              f"socket:[{peer.ino}] says: hiber cannot restore such a pair")


class DumpedPairs:
    """The dump's unix sockets: each end's peer, checked once every process
    is collected; the queued data, written to sk-queues.img."""

    def __init__(self):
        self.ends = {}        # inode -> (peer inode, where it was found)
        self.queues = QueuedMessages()

    def finish(self):
        for ino, (peer, where) in self.ends.items():
            if peer not in self.ends:
                raise UnsupportedFile(f"{where} is a unix socket whose peer socket:[{peer}] "
                                      "no process of the tree holds: hiber cannot dump a "
                                      "pair with an end outside the tree")

    def write_images(self, images):
        self.queues.write_images(images)


def dump_fd(table, fd):
    where = f"PID {fd.pid} fd {fd.fd} ({fd.link})"
    me = sock_diag.unix_socket(fd.info.st_ino)
    if me is None:
        if not sock_diag.unix_diag_works():
            raise UnsupportedFile(f"{where} is a unix socket, and this kernel does not "
                                  "describe unix sockets through sock_diag "
                                  "(CONFIG_UNIX_DIAG): hiber cannot dump it")
        raise UnsupportedFile(f"{where} is a unix socket of another network namespace: "
                              "hiber cannot dump it")
    _refuse_unless_pair_end(me, where)
    _check_peer(me, sock_diag.unix_socket(me.peer), where)
    with socket_of(fd) as sock:
        opts = dump_options(sock, where)
        messages = peek_queue(sock, where)
    entry = classes["unix_sk_entry"](
        id=0, ino=me.ino, type=me.type, state=me.state, flags=fd.flags & ~O_CLOEXEC,
        uflags=0, backlog=me.wqueue, peer=me.peer, fown=fd.owner(), opts=opts, name=b"")
    if me.shutdown:
        entry.shutdown = me.shutdown
    if table.net_ns_id:
        entry.ns_id = table.net_ns_id
    file_id = table.add(KIND, entry)
    pairs = table.state(KIND, DumpedPairs)
    pairs.ends[me.ino] = (me.peer, where)
    pairs.queues.add(file_id, messages)
    return file_id


# ---- restore ---------------------------------------------------------------------

def _where(entry):
    return f"file #{entry.id} (unix socket:[{entry.usk.ino}])"


def peer_entry(files, entry):
    """The file entry of the other end of ``entry``'s pair, or None."""
    return next((f for f in files.by_id.values()
                 if f.HasField("usk") and f.usk.ino == entry.usk.peer), None)


def check(files, entry):
    """What a socketpair() cannot be made into, refused in one line."""
    usk, where = entry.usk, _where(entry)
    if usk.name:
        raise UnsupportedFile(f"{where} is bound to {_name_in_words(usk.name)}: hiber cannot "
                              "restore named unix sockets yet")
    if usk.state == TCP_LISTEN:
        raise UnsupportedFile(f"{where} is listening: hiber cannot restore listening unix "
                              "sockets yet")
    if usk.uflags:
        raise UnsupportedFile(f"{where} is external or CRIU's own (uflags {usk.uflags:#x}): "
                              "hiber cannot restore it")
    if usk.type not in PAIR_TYPES or usk.state != TCP_ESTABLISHED or not usk.peer:
        raise UnsupportedFile(f"{where} is not one end of a connected pair: hiber restores "
                              "socket pairs only, for now")
    peer = peer_entry(files, entry)
    if peer is None:
        raise UnsupportedFile(f"{where}: the images have no socket:[{usk.peer}], its peer: "
                              "hiber cannot restore a pair with an end outside the tree")
    if peer.usk.peer != usk.ino or peer.usk.type != usk.type or peer.usk.name:
        raise UnsupportedFile(f"{where} and its peer socket:[{usk.peer}] are not the two ends "
                              "of one pair: hiber restores socket pairs only, for now")
    check_options(usk.opts, where)
    for packet, _ in files.data(KIND).get(entry.id, []):
        if len(packet.scm):
            raise UnsupportedFile(f"{where} has file descriptors (SCM_RIGHTS) queued in it: "
                                  "hiber cannot restore them yet")


def _finish_end(sock, entry):
    restore_options(sock, entry.usk.opts)
    if entry.usk.shutdown:
        sock.shutdown(SHUTDOWN_HOW[entry.usk.shutdown])


def open_end(stub, entry):
    """One end of its pair: the pair is made (and filled) the first time
    either end is asked for; the other end waits for its own entry."""
    waiting = stub.state(KIND, dict)  # inode -> fd of an end made with its peer
    if entry.usk.ino in waiting:
        return waiting.pop(entry.usk.ino)
    peer = peer_entry(stub.files, entry)
    ours, theirs = socket.socketpair(socket.AF_UNIX, entry.usk.type)
    try:
        queued = stub.files.data(KIND)
        make_room(ours)
        make_room(theirs)
        # what an end is to read, its peer sends
        refill(theirs, queued.get(entry.id, []), _where(entry))
        refill(ours, queued.get(peer.id, []), _where(peer))
        _finish_end(ours, entry)
        _finish_end(theirs, peer)
        our_fd = high_dup(ours.detach(), stub.floor)
        their_fd = high_dup(theirs.detach(), stub.floor)
    finally:
        ours.close()
        theirs.close()
    set_status_flags(our_fd, entry.usk.flags)
    set_status_flags(their_fd, peer.usk.flags)
    # closed with the stub's other temporaries if no fd of the tree takes it
    waiting[peer.usk.ino] = stub.temporary(their_fd)
    return our_fd


def label(entry):
    usk = entry.usk
    words = f"unix {type_in_words(usk.type)} socket:[{usk.ino}], pair with socket:[{usk.peer}]"
    if usk.shutdown:
        words += f", {SHUTDOWN_WORDS.get(usk.shutdown, 'shut down')}"
    return words


KIND = Kind(name="unix socket", fd_type=FD_TYPES["UNIXSK"], entry_field="usk",
            match=is_unix_socket, dump=dump_fd, check=check, open=open_end, label=label,
            read_images=read_queues)
