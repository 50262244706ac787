"""Terminals, as CRIU 4.2 stores them: a TTY entry per open file
(tty_file_entry: flags, owner, the id of its terminal and of a REG entry
naming the device), one TtyInfoEntry per terminal in tty-info.img
(termios, locked termios, window size, pty index, packet mode, lock and
exclusive state, the session and foreground group it is the controlling
terminal of), and the bytes queued in each end of a pty in tty-data.img.

A terminal's id is CRIU's: (index << 1) + 1 for a pty master, (index << 1)
for its slave, and fixed indices for /dev/console, /dev/tty and the vts.

A pty comes back as a new pair, opened through /dev/ptmx until the dumped
index is had again (so /dev/pts/N names the same number, as criu does);
its slaves are opened through the master (TIOCGPTPEER), which finds the
peer even when the /dev/pts name is gone. /dev/tty is opened by the
process that holds it, once its session has its controlling terminal
back (resources/ctty.py gives it).

With --shell-job a pts whose master is outside the tree is the shell's
terminal: the restore gives the tree the terminal hiber runs on, as criu
-j does.
"""

import errno
import fcntl
import os
import stat as st
import struct
import termios

from ...errors import RestoreError
from ...images.messages import classes
from . import regular
from .common import O_CLOEXEC, UnsupportedFile, borrow_fd, high_dup, set_status_flags
from .table import FD_TYPES, Kind

# Documentation/admin-guide/devices.txt: 4 holds the vts (minors 1-63),
# 5 /dev/tty (0), /dev/console (1) and /dev/ptmx (2), 128-135 the unix98
# pty masters, 136-143 their slaves
TTY_MAJOR, TTYAUX_MAJOR = 4, 5
PTY_MASTER_MAJORS = range(128, 136)
PTY_SLAVE_MAJORS = range(136, 144)
TTY_MAJORS = (TTY_MAJOR, TTYAUX_MAJOR, *PTY_MASTER_MAJORS, *PTY_SLAVE_MAJORS)

# criu/tty.c's indices of the terminals that are not ptys
CONSOLE_INDEX, VT_INDEX, CTTY_INDEX = 1002, 1004, 1006
MAX_PTY_INDEX = 1000

# include/uapi/asm-generic/ioctls.h
TIOCGPTN, TIOCSPTLCK, TIOCGPTLCK = 0x80045430, 0x40045431, 0x80045439
TIOCGPKT, TIOCGEXCL, TIOCGPTPEER = 0x80045438, 0x80045440, 0x5441
TIOCPKT, TIOCEXCL, TIOCSCTTY = 0x5420, 0x540C, 0x540E
TIOCGSID, TIOCGPGRP, TIOCSPGRP = 0x5429, 0x540F, 0x5410
TIOCGLCKTRMIOS, TIOCSLCKTRMIOS = 0x5456, 0x5457
# the kernel's struct termios (TCGETS): four flag words, c_line, 19 c_cc;
# it has no speeds, so CRIU's images hold 0 there
TERMIOS = struct.Struct("4IB19s")
NCCS = 19
# CRIU 4.2 fills termios_entry.c_cc (19 uint32) with a memcpy of glibc's
# 32-byte c_cc (criu/tty.c, termios_copy): the control characters packed
# four to a word, little-endian, in the first 8 words; it reads them back
# the same way, so hiber writes and reads them so too (the last 11 words,
# which CRIU leaves unset, are written 0 and never read)
GLIBC_NCCS = 32
TERMIOS_NCC = 19
WINSIZE = struct.Struct("4H")
# criu/tty.c reads at most this much queued in each end
QUEUED_LIMIT = 16384

# tty_info_entry.TtyType
PTY, CONSOLE, VT, CTTY = 1, 2, 3, 4


def is_tty(info):
    return os.major(info.st_rdev) in TTY_MAJORS


def is_terminal_fd(fd):
    return st.S_ISCHR(fd.info.st_mode) and is_tty(fd.info)


# ---- which terminal -----------------------------------------------------------

def classify(fd):
    """(type, index, is master) of a terminal fd, as criu/tty.c's drivers."""
    major, minor = os.major(fd.info.st_rdev), os.minor(fd.info.st_rdev)
    if (major == TTYAUX_MAJOR and minor == 2) or major in PTY_MASTER_MAJORS:
        if "tty-index" in fd.fdinfo:
            index = int(fd.fdinfo["tty-index"])
        else:
            with borrow_fd(fd.pid, fd.fd) as ours:
                index = _get_int(ours, TIOCGPTN)
        return PTY, index, True
    if major in PTY_SLAVE_MAJORS:
        return PTY, (major - PTY_SLAVE_MAJORS[0]) * 256 + minor, False
    if major == TTYAUX_MAJOR and minor == 1:
        return CONSOLE, CONSOLE_INDEX, False
    if major == TTYAUX_MAJOR and minor == 0:
        return CTTY, CTTY_INDEX, False
    if major == TTY_MAJOR and 1 <= minor <= 63:
        return VT, VT_INDEX, False
    raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is a terminal ({fd.link}, device "
                          f"{major}:{minor}) of a kind hiber cannot dump yet (serial lines)")


def info_id(index, master):
    return (index << 1) + (1 if master else 0)


def _get_int(fd, request):
    return struct.unpack("i", fcntl.ioctl(fd, request, b"\0" * 4))[0]


def _try_int(fd, request, default=0):
    try:
        return _get_int(fd, request)
    except OSError:
        return default


def _termios_entry(raw):
    iflag, oflag, cflag, lflag, line, cc = TERMIOS.unpack(raw[:TERMIOS.size])
    packed = cc.ljust(GLIBC_NCCS, b"\0")
    words = list(struct.unpack(f"<{GLIBC_NCCS // 4}I", packed))
    words += [0] * (TERMIOS_NCC - len(words))
    return classes["termios_entry"](c_iflag=iflag, c_oflag=oflag, c_cflag=cflag,
                                    c_lflag=lflag, c_line=line, c_ispeed=0, c_ospeed=0,
                                    c_cc=words)


def _termios_bytes(entry):
    words = list(entry.c_cc)[:GLIBC_NCCS // 4]
    words += [0] * (GLIBC_NCCS // 4 - len(words))
    cc = struct.pack(f"<{GLIBC_NCCS // 4}I", *(w & 0xffffffff for w in words))[:NCCS]
    return TERMIOS.pack(entry.c_iflag, entry.c_oflag, entry.c_cflag, entry.c_lflag,
                        entry.c_line, cc)


def _session_of(pid, rdev):
    """(sid, foreground group) of the terminal ``rdev`` if it is the
    controlling terminal of ``pid`` (/proc/PID/stat: session, tty_nr, tpgid),
    else (0, 0): TIOCGSID on a slave answers only to its own session."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    session, tty_nr, tpgid = int(fields[3]), int(fields[4]), int(fields[5])
    major = (tty_nr >> 8) & 0xfff
    minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00)
    if (major, minor) == (os.major(rdev), os.minor(rdev)):
        return session, max(tpgid, 0)
    return 0, 0


# ---- dump ---------------------------------------------------------------------

class DumpedTerminals:
    """The dump's terminals: one TtyInfoEntry each, and the fds to read
    their queued data from once the whole tree is collected."""

    def __init__(self, table):
        self.table = table
        self.infos = {}     # info id -> tty_info_entry
        self.holders = {}   # info id -> (pid, fd) of one fd of it
        self.data = []      # tty_data_entry

    def add(self, fd, tty_type, index, master):
        tid = info_id(index, master)
        if tid in self.infos:
            return tid
        info = classes["tty_info_entry"](id=tid, type=tty_type, locked=False, exclusive=False,
                                         packet_mode=False, sid=0, pgrp=0,
                                         rdev=fd.info.st_rdev, dev=fd.info.st_dev,
                                         uid=fd.info.st_uid, gid=fd.info.st_gid)
        if tty_type == PTY:
            info.pty.index = index
        with borrow_fd(fd.pid, fd.fd) as ours:
            if master:
                # on a master these answer for the pair, from any process
                info.sid = max(_try_int(ours, TIOCGSID), 0)
                info.pgrp = max(_try_int(ours, TIOCGPGRP), 0)
                info.locked = bool(_try_int(ours, TIOCGPTLCK))
                info.packet_mode = bool(_try_int(ours, TIOCGPKT))
            else:
                info.sid, info.pgrp = _session_of(fd.pid, fd.info.st_rdev)
            info.exclusive = bool(_try_int(ours, TIOCGEXCL))
            try:
                raw = fcntl.ioctl(ours, termios.TCGETS, bytes(64))
                locked = fcntl.ioctl(ours, TIOCGLCKTRMIOS, bytes(64))
                size = fcntl.ioctl(ours, termios.TIOCGWINSZ, bytes(WINSIZE.size))
            except OSError as e:
                if e.errno != errno.EIO:  # a terminal hung up: only what is known
                    raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} ({fd.link}): cannot read "
                                          f"its terminal settings: {e.strerror}") from None
            else:
                info.termios.CopyFrom(_termios_entry(raw))
                info.termios_locked.CopyFrom(_termios_entry(locked))
                row, col, xpixel, ypixel = WINSIZE.unpack(size)
                info.winsize.CopyFrom(classes["winsize_entry"](
                    ws_row=row, ws_col=col, ws_xpixel=xpixel, ws_ypixel=ypixel))
        self.infos[tid] = info
        self.holders[tid] = (fd.pid, fd.fd)
        return tid

    def finish(self):
        """criu's tty_verify_active_pairs and dump_verify_tty_sids, then
        the queued data of every pair with both ends in the tree."""
        for tid, info in self.infos.items():
            if info.type != PTY:
                continue
            master = tid | 1
            hung = not info.HasField("termios")  # its master closed: the pty is hung up
            if not tid & 1 and master not in self.infos and not hung:
                if not self.table.shell_job:
                    pid, fd = self.holders[tid]
                    raise UnsupportedFile(
                        f"PID {pid} fd {fd} is /dev/pts/{info.pty.index}, whose master is "
                        "outside the tree: run the dump with --shell-job (-j) if it is the "
                        "shell's terminal")
            if not tid & 1 and master in self.infos:
                # the master knows the pair's session from anywhere
                info.sid, info.pgrp = self.infos[master].sid, self.infos[master].pgrp
        for tid, info in self.infos.items():
            if info.sid and info.sid not in self.table.tree_tids and not self.table.shell_job:
                pid, fd = self.holders[tid]
                raise UnsupportedFile(
                    f"PID {pid} fd {fd}: its terminal is the controlling terminal of session "
                    f"{info.sid}, outside the tree (a task attached to the shell's terminal): "
                    "run the dump with --shell-job (-j)")
        for tid in sorted(self.infos):
            if tid & 1 and self.infos[tid].type == PTY and tid & ~1 in self.infos:
                self._take_queued(tid, tid & ~1)

    def _take_queued(self, master_id, slave_id):
        """Read what waits in each end, then write it back through the other
        end at once (criu reads it last, as here, and writes it back when the
        tree runs on; here always, so a dump failing later loses nothing)."""
        taken = {}
        for tid in (master_id, slave_id):
            pid, fd = self.holders[tid]
            # a master in packet mode heads each read with a status byte
            # (drivers/tty/pty.c): the data is what follows it
            packet = tid & 1 and self.infos[tid].packet_mode
            with borrow_fd(pid, fd) as ours:
                taken[tid] = _read_nonblocking(ours, packet)
        for tid, peer in ((master_id, slave_id), (slave_id, master_id)):
            if taken[tid]:
                self.data.append(classes["tty_data_entry"](tty_id=tid, data=taken[tid]))
                pid, fd = self.holders[peer]
                with borrow_fd(pid, fd) as ours:
                    _write_nonblocking(ours, taken[tid])

    def write_images(self, images):
        if self.infos:
            images.write("TTY_INFO", None, [self.infos[t] for t in sorted(self.infos)])
        if self.data:
            images.write("TTY_DATA", None, self.data)


def _with_nonblock(fd, action):
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        return action()
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)  # the open file is the dumped process's too


def _read_nonblocking(fd, packet=False):
    def read():
        out = b""
        while len(out) < QUEUED_LIMIT:
            try:
                chunk = os.read(fd, QUEUED_LIMIT - len(out))
            except (BlockingIOError, OSError):
                break  # EAGAIN: nothing more; EIO: the other end is gone
            if not chunk:
                break
            if packet:  # status 0 (TIOCPKT_DATA) heads data; others are bare events
                chunk = chunk[1:] if chunk[0] == 0 else b""
            out += chunk
        return out
    return _with_nonblock(fd, read)


def _write_nonblocking(fd, data):
    def write():
        try:
            os.write(fd, data)
        except OSError:
            pass  # a terminal never promised delivery (criu/tty.c)
    _with_nonblock(fd, write)


def dump_fd(table, fd):
    tty_type, index, master = classify(fd)
    terminals = table.state(KIND, lambda: DumpedTerminals(table))
    tid = terminals.add(fd, tty_type, index, master)
    name = "/dev/ptmx" if master else fd.link
    if name.endswith(" (deleted)"):
        name = name[:-len(" (deleted)")]
    regf_id = regular.add_entry(table, name, fd.info, flags=fd.flags & ~O_CLOEXEC)
    entry = classes["tty_file_entry"](id=0, tty_info_id=tid, flags=fd.flags & ~O_CLOEXEC,
                                      fown=fd.owner(), regf_id=regf_id)
    return table.add(KIND, entry)


# ---- restore ------------------------------------------------------------------

def read_images(images):
    infos = {i.id: i for i in images.read_optional("TTY_INFO")}
    data = {d.tty_id: d.data for d in images.read_optional("TTY_DATA")}
    return infos, data


def check(files, entry):
    infos, _ = files.data(KIND)
    tty = entry.tty
    info = infos.get(tty.tty_info_id)
    if info is None:
        raise RestoreError(f"file #{entry.id}: tty-info.img has no terminal "
                           f"{tty.tty_info_id:#x}, which it names")
    if info.type not in (PTY, CONSOLE, VT, CTTY):
        raise UnsupportedFile(f"file #{entry.id} is a terminal of a kind hiber cannot "
                              "restore yet (external or serial)")


def opens_late(files, entry):
    """/dev/tty opens the controlling terminal of the process opening it:
    its holder opens it, once its session has its terminal again."""
    if not entry.HasField("tty"):
        return False
    infos, _ = files.data(KIND)
    info = infos.get(entry.tty.tty_info_id)
    return info is not None and info.type == CTTY


def _files_of(stub, tid):
    return [f for f in stub.files.by_id.values()
            if f.HasField("tty") and f.tty.tty_info_id == tid]


class Pair:
    """A restored pty: its master, and the terminal settings given to it."""

    def __init__(self, stub, index):
        infos, data = stub.files.data(KIND)
        self.floor = stub.floor
        self.master_id, self.slave_id = info_id(index, True), info_id(index, False)
        master_info = infos.get(self.master_id)
        slave_info = infos.get(self.slave_id)
        masters = _files_of(stub, self.master_id)
        flags = masters[0].tty.flags if masters else os.O_RDWR
        self.master = stub.temporary(high_dup(_open_ptmx(index, flags), stub.floor))
        set_status_flags(self.master, flags)
        fcntl.ioctl(self.master, TIOCSPTLCK, struct.pack("i", 0))
        info = master_info or slave_info
        _set_params(self.master, info)
        if master_info is not None and master_info.packet_mode:
            fcntl.ioctl(self.master, TIOCPKT, struct.pack("i", 1))
        self.slaves_opened = False
        self.info, self.slave_info, self.data = master_info, slave_info, data
        if not _files_of(stub, self.slave_id):
            self._lock()  # no slave to open first

    def open_slave(self, flags):
        fd = high_dup(fcntl.ioctl(self.master, TIOCGPTPEER,
                                  (flags & ~O_CLOEXEC) | os.O_NOCTTY), self.floor)
        return fd

    def first_slave(self, fd):
        """Once, on the first slave: its settings, the queued data both ways,
        then the lock, as criu's pty_open_ptmx orders them."""
        if self.slaves_opened:
            return
        self.slaves_opened = True
        if self.slave_info is not None:
            if self.slave_info.HasField("uid"):
                os.fchown(fd, self.slave_info.uid, self.slave_info.gid)
            if self.slave_info.exclusive:
                fcntl.ioctl(fd, TIOCEXCL)
        for data_id, target in ((self.master_id, fd), (self.slave_id, self.master)):
            if self.data.get(data_id):
                _write_nonblocking(target, self.data[data_id])
        self._lock()

    def _lock(self):
        if self.info is not None and self.info.locked:
            fcntl.ioctl(self.master, TIOCSPTLCK, struct.pack("i", 1))


def _open_ptmx(index, flags):
    """/dev/ptmx opened until it hands out ``index`` (criu keeps the pts
    number so); the numbers taken on the way are given back."""
    tried = []
    try:
        for _ in range(32):
            fd = os.open("/dev/ptmx", (flags & 3) | os.O_NOCTTY | os.O_CLOEXEC)
            got = _get_int(fd, TIOCGPTN)
            if got == index:
                return fd
            tried.append(fd)
            if got > index or index - got >= 32:
                break
        raise RestoreError(f"cannot open the pty /dev/pts/{index} again: that number is "
                           "taken; close what holds it and restore again")
    finally:
        for fd in tried:
            os.close(fd)


def _set_params(fd, info):
    if info is None:
        return
    if info.HasField("termios_locked"):
        fcntl.ioctl(fd, TIOCSLCKTRMIOS, _termios_bytes(info.termios_locked))
    if info.HasField("termios"):
        fcntl.ioctl(fd, termios.TCSETS, _termios_bytes(info.termios))
    if info.HasField("winsize"):
        w = info.winsize
        fcntl.ioctl(fd, termios.TIOCSWINSZ,
                    WINSIZE.pack(w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel))


def pair_of(stub, index):
    """The pty pair of ``index``, made the first time either end is asked."""
    pairs = stub.state(KIND, dict)
    if index not in pairs:
        pairs[index] = Pair(stub, index)
    return pairs[index]


def open_entry(stub, entry):
    infos, _ = stub.files.data(KIND)
    tty = entry.tty
    info = infos[tty.tty_info_id]
    if info.type == PTY:
        index = info.pty.index
        if not tty.tty_info_id & 1 and info_id(index, True) not in infos:
            if info.HasField("termios"):
                return _shell_terminal(stub, entry)
            # a hung-up pty (its master was closed): made with a master the
            # stub closes once the fds are in place, which hangs it up again
            # (criu's pty_open_unpaired_slave)
        pair = pair_of(stub, index)
        if tty.tty_info_id & 1:
            fd = os.dup(pair.master)
            return high_dup(fd, stub.floor)
        fd = pair.open_slave(tty.flags)
        pair.first_slave(fd)
        return fd
    name = {CONSOLE: "/dev/console", CTTY: "/dev/tty"}.get(info.type)
    if name is None:
        name = stub.files.entry(tty.regf_id).reg.name
    fd = os.open(name, (tty.flags & ~O_CLOEXEC) | os.O_NOCTTY)
    fd = high_dup(fd, stub.floor)
    if info.type != CTTY:
        _set_params(fd, info)
    return fd


def _shell_terminal(stub, entry):
    """A pts whose master was outside the tree (a shell job): the terminal
    hiber runs on, as criu -j gives the job the restoring shell's."""
    if stub.shell_tty is None:
        raise RestoreError(f"file #{entry.id} is the terminal of a shell job: restore it "
                           "with --shell-job (-j) from a terminal")
    fd = os.open(stub.shell_tty, (entry.tty.flags & ~O_CLOEXEC) | os.O_NOCTTY)
    return high_dup(fd, stub.floor)


def label(entry):
    return f"terminal {entry.tty.tty_info_id:#x}"


KIND = Kind(name="terminal", fd_type=FD_TYPES["TTY"], entry_field="tty",
            match=is_terminal_fd, dump=dump_fd, check=check, open=open_entry,
            label=label, read_images=read_images)
