"""Making the unix sockets of the tree again: all of them at once, in the
root stub, the first time one is asked for, so that the order their names
and connections need is kept whatever order the fds come in (CRIU orders
the same steps across processes with its file engine's stages):

  1. the stale socket files at the names about to be bound are removed;
  2. every socket is made: two connected to each other (a socketpair(), or
     a connection accepted from a listener) as one socketpair(); one whose
     peer was closed as one end of a pair whose other end sends it what it
     had queued, then goes;
  3. sockets are bound, the names whose files still exist first, then the
     deleted ones (unix_names.py); a connected stream or seqpacket socket
     is not (it reports its listener's name, which is taken);
  4. listeners listen, with their backlog;
  5. datagrams are queued back for a datagram socket, each from the socket
     bound to the address it came from (or from a socket bound to nothing),
     before that socket connects anywhere: a datagram socket connected to
     one peer takes datagrams from that peer only (unix_may_send); but when
     all came from that peer, after it connects (then it takes any number);
  6. sockets connect to their peers: a datagram socket to the one it sends
     to, a connection not accepted yet to its listener, where it waits to
     be accepted again; a deleted peer through its kept file;
  7. the other queues are sent back, by the peer of their reader;
  8. each socket gets its options, its shutdown (after the data: a socket
     shut down for writing sends nothing more) and its open flags.

A failure removes the socket files bound so far.
"""

import socket

from ...kernel.sock_diag import TCP_ESTABLISHED, TCP_LISTEN
from ..files import epoll
from ..files.common import UnsupportedFile, high_dup, set_status_flags
from .options import make_room, restore_options
from .queues import read_queues, refill, rights_of, send_message
from .unix_names import BoundFiles, in_dir, is_path, name_in_words, same_address

# unix_sk_entry.uflags (CRIU's sk-unix.c): a peer outside the tree, CRIU's
# own service socket, one a plugin dumped, one inherited (--inherit-fd)
USK_EXTERN, USK_SERVICE, USK_CALLBACK, USK_INHERIT = 0x1, 0x2, 0x4, 0x8
# shutdown(2)'s "how" for the sk_shutdown bits (READ = 1, WRITE = 2, BOTH = 3):
# the bits less one
SHUTDOWN_HOW = {1: socket.SHUT_RD, 2: socket.SHUT_WR, 3: socket.SHUT_RDWR}
CONNECT_TIMEOUT = 10


# ---- the entries, as a restore reads them (the checks in unix.py too) ----------------

def where_of(entry):
    return f"file #{entry.id} (unix socket:[{entry.usk.ino}])"


class UnixImages:
    """What a restore reads of unix sockets before making anything: their
    queues (sk-queues.img) and their file entries by inode (peers name each
    other by inode)."""

    def __init__(self, images):
        self.queues = read_queues(images)
        self.ids_by_ino = {f.usk.ino: f.id for f in images.read_optional("FILES")
                           if f.HasField("usk")}

    def packets(self, entry):
        """(sk_packet_entry, bytes) of what ``entry`` has to read, in order."""
        return self.queues.get(entry.id, [])

    def entry(self, files, ino):
        """The file entry (of ``files``, the one the stub sees) of the
        socket with inode ``ino``, or None."""
        file_id = self.ids_by_ino.get(ino)
        return files.by_id.get(file_id) if file_id is not None else None


def unix_entries(files):
    return [f for f in files.by_id.values() if f.HasField("usk")]


def is_external(entry):
    return bool(entry.usk.uflags & USK_EXTERN)


# ---- making them ---------------------------------------------------------------------

def make_all(stub, unix_images):
    """file id -> fd (at or above the stub's floor) of every unix socket of
    the images (``unix_images``: their UnixImages); each fd is also one of
    the stub's temporaries, closed once the fds of the tree are in place."""
    maker = Maker(stub, unix_images)
    try:
        maker.run()
    except BaseException:
        maker.abandon()
        raise
    return maker.handed_out()


class Maker:
    def __init__(self, stub, unix_images):
        self.stub = stub
        self.files = stub.files
        self.unix_images = unix_images
        self.entries = sorted(unix_entries(self.files), key=lambda f: f.id)
        self.ours = [e for e in self.entries if not is_external(e)]
        self.socks = {}      # file id -> socket object
        self.closers = {}    # file id -> the other end of the pair made for a
                             # socket whose peer was closed
        self.bound = BoundFiles()
        self.installed = set()  # ids of passed files completed (_install_in_flight)
        self.fds = {}

    # ---- who is connected to whom --------------------------------------------

    def peer(self, entry):
        return self.unix_images.entry(self.files, entry.usk.peer) if entry.usk.peer else None

    def paired(self, entry):
        """The other socket of a pair (each the other's peer), or None."""
        peer = self.peer(entry)
        if peer is None or peer is entry or is_external(peer):
            return None
        return peer if peer.usk.peer == entry.usk.ino else None

    @staticmethod
    def peer_closed(entry):
        """A socket whose peer was closed: connected, with no peer. A
        datagram socket others connected to says the same (unix_dgram_connect
        marks both connected), and has a name for them: a nameless one
        is one whose peer was closed."""
        usk = entry.usk
        return usk.state == TCP_ESTABLISHED and not usk.peer and \
            (usk.type != socket.SOCK_DGRAM or not usk.name)

    # ---- the stages ------------------------------------------------------------

    def run(self):
        for e in self.ours:
            if self._binds(e) and is_path(e.usk.name) and not e.usk.deleted:
                self.bound.remove_stale(e, where_of(e))
        for e in self.ours:
            self._make(e)
        for e in sorted(self.ours, key=lambda e: bool(e.usk.deleted)):
            if self._binds(e):
                self.bound.bind(self.socks[e.id], e, where_of(e))
        for e in self.ours:
            if e.usk.state == TCP_LISTEN:
                self.socks[e.id].listen(e.usk.backlog)
        late = [e for e in self.ours if self._sent_by_its_peer(e)]
        for e in self.ours:
            if e.usk.type == socket.SOCK_DGRAM and self.paired(e) is None \
                    and e.id not in self.closers and e not in late:
                self._queue_datagrams(e)
        for e in self.ours:
            self._connect(e)
        for e in late:
            self._queue_datagrams(e)
        for e in self.ours:
            self._queue_from_peer(e)
        for closer in self.closers.values():
            closer.close()  # the reader sees its peer gone, as it was dumped
        self.closers.clear()
        for e in self.ours:
            self._finish(e)
        self.bound.close()
        for e in self.ours:
            sock = self.socks.pop(e.id)
            self.fds[e.id] = self.stub.temporary(high_dup(sock.detach(), self.stub.floor))

    def handed_out(self):
        return self.fds

    def abandon(self):
        for sock in [*self.socks.values(), *self.closers.values()]:
            sock.close()
        self.bound.close()
        self.bound.remove_made()

    def _binds(self, entry):
        usk = entry.usk
        # an accepted socket reports its listener's name: that name is taken
        return bool(usk.name) and not (usk.type != socket.SOCK_DGRAM and
                                       usk.state == TCP_ESTABLISHED)

    def _make(self, entry):
        if entry.id in self.socks:
            return
        sock_type = entry.usk.type
        other = self.paired(entry)
        if other is not None:
            self.socks[entry.id], self.socks[other.id] = socket.socketpair(socket.AF_UNIX,
                                                                           sock_type)
        elif self.peer_closed(entry):
            self.socks[entry.id], self.closers[entry.id] = socket.socketpair(socket.AF_UNIX,
                                                                             sock_type)
        else:
            self.socks[entry.id] = socket.socket(socket.AF_UNIX, sock_type)
        for sock in (self.socks[entry.id], self.socks.get(getattr(other, "id", None)),
                     self.closers.get(entry.id)):
            if sock is not None:
                make_room(sock)

    def _connect(self, entry):
        peer = self.peer(entry)
        if peer is None or self.paired(entry) is not None:
            return
        sock = self.socks[entry.id]
        address = self.bound.address(peer)
        sock.settimeout(CONNECT_TIMEOUT)  # a full backlog waits, never for ever
        try:
            with in_dir(self._dir_of(peer, address)):
                sock.connect(address)
        except OSError as e:
            raise UnsupportedFile(f"{where_of(entry)}: cannot connect it to "
                                  f"{self._peer_words(peer)}: {e.strerror or e}") from None
        finally:
            sock.settimeout(None)

    def _dir_of(self, entry, address):
        """Where a relative ``address`` of ``entry`` is reached."""
        if address is not None and is_path(address) and not address.startswith(b"/"):
            return entry.usk.name_dir or None
        return None

    @staticmethod
    def _peer_words(peer):
        return f"socket:[{peer.usk.ino}] ({name_in_words(peer.usk.name)})"

    # ---- queues ------------------------------------------------------------------

    def _fds_of(self, file_ids):
        """The fds of the files a message passes: the stub's own."""
        return [self._fd_of(file_id, in_flight=True) for file_id in file_ids]

    def _fd_of(self, file_id, in_flight=False):
        if file_id in self.socks:
            return self.socks[file_id].fileno()
        fd = self.stub.open_object(file_id)
        if in_flight:
            self._install_in_flight(file_id, fd)
        return fd

    def _install_in_flight(self, file_id, fd):
        """A passed file that needs the fd numbers of a process to be
        complete (an epoll's watches: Kind.install) may be held by no
        process: it is completed here, with the files of its watches open
        in the stub (install puts each at its number for the time it
        takes). One a process holds too finds its watches made (EEXIST)."""
        entry = self.files.entry(file_id)
        if not entry.HasField("epfd") or file_id in self.installed:
            return  # an epoll is the one kind with such a step
        self.installed.add(file_id)
        fd_ids = {self._fd_of(w.id): w.id for w in entry.epfd.tfd}
        epoll.install(self.stub, entry, fd, fd_ids)

    def _queue_from_peer(self, entry):
        packets = self.unix_images.packets(entry)
        if not packets or (entry.usk.type == socket.SOCK_DGRAM and self.paired(entry) is None
                           and entry.id not in self.closers):
            return
        other = self.paired(entry)
        if other is not None:
            sender = self.socks[other.id]
        elif entry.id in self.closers:
            sender = self.closers[entry.id]
        else:
            raise UnsupportedFile(f"{where_of(entry)} has data queued but no peer that could "
                                  "have sent it")
        refill(sender, packets, where_of(entry), self._fds_of)

    def _queue_datagrams(self, entry):
        """Datagrams for a socket not connected to its one sender: each sent
        to its address, from the socket of the tree bound to the address it
        came from, else from a socket bound to nothing."""
        packets = self.unix_images.packets(entry)
        if not packets:
            return
        where = where_of(entry)
        address = self.bound.address(entry)
        if address is None:
            raise UnsupportedFile(f"{where} has datagrams queued but neither a name nor a peer "
                                  "they could be sent to it again through")
        nameless = None
        try:
            with in_dir(self._dir_of(entry, address), where):
                for packet, data in packets:
                    sender = self._named_sender(packet)
                    if sender is None:
                        if nameless is None:
                            nameless = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                            make_room(nameless)
                        sender = nameless
                    fds = self._fds_of(rights_of(packet)) if len(packet.scm) else ()
                    send_message(sender, packet, data, where, fds, address)
        finally:
            if nameless is not None:
                nameless.close()

    def _sent_by_its_peer(self, entry):
        """Whether every datagram ``entry`` has queued came from the socket
        it is connected to (one way): those are queued back once it is
        connected again, as the kernel then takes any number of them
        (unix_dgram_sendmsg counts max_dgram_qlen against others only)."""
        peer = self.peer(entry)
        packets = self.unix_images.packets(entry)
        return entry.usk.type == socket.SOCK_DGRAM and peer is not None and packets and \
            not is_external(peer) and self.paired(entry) is None and \
            all(p.HasField("sender") and same_address(p.sender, peer.usk.name)
                for p, _ in packets)

    def _named_sender(self, packet):
        if not packet.HasField("sender") or not packet.sender:
            return None
        for e in self.ours:
            if e.usk.type == socket.SOCK_DGRAM and self._binds(e) and \
                    same_address(e.usk.name, packet.sender):
                return self.socks[e.id]
        return None

    # ---- last ----------------------------------------------------------------------

    def _finish(self, entry):
        sock, usk = self.socks[entry.id], entry.usk
        restore_options(sock, usk.opts)
        if usk.HasField("shutdown") and usk.shutdown:
            try:
                sock.shutdown(SHUTDOWN_HOW[usk.shutdown])
            except OSError as e:
                raise UnsupportedFile(f"{where_of(entry)}: shutdown failed: {e.strerror}") \
                    from None
        set_status_flags(sock.fileno(), usk.flags)
