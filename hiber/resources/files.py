"""Open files: files.img (every open-file object), fdinfo-N.img (fd tables),
pipes-data.img, fs-PID.img (cwd, root, umask).

One dispatch table maps an fd's kind to the function that describes it;
a kind without an entry fails the dump with a message naming pid, fd, kind.
"""

import errno
import fcntl
import logging
import os
import stat as st

from ..errors import HiberError
from ..images.messages import classes
from ..kernel import proc
from ..kernel.sys import SPLICE_F_NONBLOCK, kcmp, KCMP_FILE, tee, write_all
from . import shmem

log = logging.getLogger(__name__)

FileEntry = classes["file_entry"]
FD_REG, FD_PIPE, FD_FIFO, FD_TTY, FD_MEMFD = 1, 2, 3, 11, 18
O_CLOEXEC = 0o2000000
O_DIRECT = 0o40000
O_ACCMODE = 3
O_APPEND = 0o2000
F_GETPIPE_SZ = 1032
F_SETPIPE_SZ = 1031


class UnsupportedFile(HiberError):
    pass


def no_owner():
    """The fown_entry of a file nobody set an owner on (F_SETOWN)."""
    return classes["fown_entry"](uid=0, euid=0, signum=0, pid_type=0, pid=0)


def _fown_of(fd):
    """Owner of an open file (F_SETOWN/F_SETSIG), read through our duplicate."""
    fown = no_owner()
    try:
        signum = fcntl.fcntl(fd, 11)  # F_GETSIG
        owner = fcntl.fcntl(fd, 9)    # F_GETOWN: >0 a pid, <0 a process group
    except OSError:
        return fown
    fown.signum = signum
    if owner:
        fown.pid = abs(owner)
        fown.pid_type = 2 if owner < 0 else 1  # F_OWNER_PGRP / F_OWNER_PID
    return fown


def build_id_words(path):
    """The ELF GNU build-id packed into LE u32 words (spec §2.15), or None."""
    try:
        from elftools.elf.elffile import ELFFile
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None
            f.seek(0)
            elf = ELFFile(f)
            for section in elf.iter_sections():
                if section.header.sh_type != "SHT_NOTE":
                    continue
                for note in section.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        raw = bytes.fromhex(note["n_desc"])
                        raw += b"\0" * (-len(raw) % 4)
                        return [int.from_bytes(raw[i:i + 4], "little")
                                for i in range(0, len(raw), 4)]
    except Exception as e:  # a damaged ELF is not a reason to fail the dump
        log.debug("no build-id for %s: %s", path, e)
    return None


class FileTable:
    """Allocates file_entry ids (from 1, in dump order) and keeps the entries."""

    def __init__(self):
        self.entries = []           # file_entry messages, files.img order
        self._mapped = {}           # (dev, ino, path) -> id
        self._open = []             # (pid, fd, id) of open file descriptions seen
        self.pipe_data = {}         # pipe inode -> (bytes, size)
        self.fifo_data = {}         # fifo inode -> (bytes, size)
        self.shmem = shmem.SharedObjects(self)

    def _next_id(self):
        return len(self.entries) + 1

    def _reg_entry(self, path, info, flags=0, pos=0, fown=None, size_check=True):
        file_id = self._next_id()
        reg = classes["reg_file_entry"](id=file_id, flags=flags, pos=pos,
                                        fown=fown or no_owner(), name=path)
        if st.S_ISREG(info.st_mode) and size_check:
            reg.size = info.st_size
        reg.mode = info.st_mode
        if st.S_ISREG(info.st_mode) and info.st_mode & 0o111:
            words = build_id_words(path)
            if words:
                reg.build_id.extend(words)
        self.entries.append(FileEntry(type=FD_REG, id=file_id, reg=reg))
        return file_id

    def mapped_file(self, path, info):
        """A file that is only mapped (or is the exe): one entry per file."""
        key = (info.st_dev, info.st_ino, path)
        if key not in self._mapped:
            self._mapped[key] = self._reg_entry(path, info)
        return self._mapped[key]

    def path_entry(self, pid, link, kind):
        """exe, cwd or root: a REG entry with flags 0 (spec §2.15)."""
        path = os.readlink(link)
        if path.endswith(" (deleted)"):
            raise UnsupportedFile(f"PID {pid}: its {kind} {path} has been deleted; "
                                  "hiber cannot dump deleted files yet")
        info = os.stat(link)
        if kind == "exe":
            return self.mapped_file(path, info)
        return self._reg_entry(path, info)

    def _same_open_file(self, pid, fd):
        for other_pid, other_fd, file_id in self._open:
            try:
                if kcmp(pid, other_pid, KCMP_FILE, fd, other_fd) == 0:
                    return file_id
            except OSError:
                continue
        return None

    # ---- fd kinds ------------------------------------------------------

    def describe_fd(self, pid, fd, fdinfo, shell_job):
        """Return (file id, fd type) for one fd of a frozen process;
        ``fdinfo`` is what /proc/PID/fdinfo/FD says."""
        shared = self._same_open_file(pid, fd)
        if shared is not None:
            return shared, self.entries[shared - 1].type
        link = proc.fd_link(pid, fd)
        flags = int(fdinfo["flags"], 8)
        pos = int(fdinfo["pos"])
        fd_path = f"/proc/{pid}/fd/{fd}"
        try:
            info = os.stat(fd_path)
        except OSError as e:
            raise UnsupportedFile(f"PID {pid} fd {fd} ({link}): cannot stat: "
                                  f"{e.strerror}") from None
        mode = info.st_mode
        if link.startswith("pipe:"):
            file_id, kind = self._pipe(pid, fd, fd_path, flags, info), FD_PIPE
        elif st.S_ISFIFO(mode):
            file_id, kind = self._fifo(pid, fd, link, fd_path, flags, info), FD_FIFO
        elif shmem.is_shmem_path(link):
            with _borrow_fd(pid, fd) as our_fd:
                fown = _fown_of(our_fd)
            file_id, kind = self.shmem.fd(link, fd_path, flags, pos, fown), FD_MEMFD
        elif st.S_ISCHR(mode) and _is_tty(info):
            if not shell_job:
                raise UnsupportedFile(f"PID {pid} fd {fd} is a terminal ({link}): run the "
                                      "dump with --shell-job (-j) to dump it as a shell job")
            file_id, kind = self._reg_fd(pid, fd, link, info, flags, pos), FD_REG
        elif st.S_ISREG(mode) or st.S_ISDIR(mode) or st.S_ISCHR(mode) or st.S_ISBLK(mode):
            if link.endswith(" (deleted)"):
                raise UnsupportedFile(f"PID {pid} fd {fd} is a deleted file ({link}): "
                                      "hiber cannot dump deleted files yet")
            if not link.startswith("/"):
                raise UnsupportedFile(f"PID {pid} fd {fd} is {link}: not supported yet")
            file_id, kind = self._reg_fd(pid, fd, link, info, flags, pos), FD_REG
        else:
            what = link.split(":")[0] if ":" in link else link
            raise UnsupportedFile(f"PID {pid} fd {fd} is a {what} ({link}): hiber cannot "
                                  "dump this kind of file yet")
        self._open.append((pid, fd, file_id))
        return file_id, kind

    def _reg_fd(self, pid, fd, link, info, flags, pos):
        status_flags = flags & ~O_CLOEXEC
        # O_WRONLY|O_APPEND files may grow under us: CRIU skips their size check
        size_check = not (status_flags & O_ACCMODE == 1 and status_flags & O_APPEND)
        with _borrow_fd(pid, fd) as our_fd:
            fown = _fown_of(our_fd)
        return self._reg_entry(link, info, status_flags, pos, fown, size_check)

    def _pipe(self, pid, fd, fd_path, flags, info):
        file_id = self._next_id()
        pipe_id = info.st_ino
        with _borrow_fd(pid, fd) as our_fd:
            fown = _fown_of(our_fd)
        entry = classes["pipe_entry"](id=file_id, pipe_id=pipe_id,
                                      flags=flags & ~(O_CLOEXEC | O_DIRECT), fown=fown)
        self.entries.append(FileEntry(type=FD_PIPE, id=file_id, pipe=entry))
        if pipe_id not in self.pipe_data:
            self.pipe_data[pipe_id] = peek_pipe(fd_path)
        return file_id

    def _fifo(self, pid, fd, link, fd_path, flags, info):
        """A named FIFO: a REG entry for its path, a FIFO entry pointing to
        it, and its queued data in fifo-data.img."""
        if link.endswith(" (deleted)"):
            raise UnsupportedFile(f"PID {pid} fd {fd} is a deleted FIFO ({link}): "
                                  "not supported yet")
        regf_id = self._reg_entry(link, info, flags & ~O_CLOEXEC, 0, no_owner(), False)
        file_id = self._next_id()
        fifo = classes["fifo_entry"](id=file_id, pipe_id=info.st_ino, regf_id=regf_id)
        self.entries.append(FileEntry(type=FD_FIFO, id=file_id, fifo=fifo))
        if info.st_ino not in self.fifo_data:
            self.fifo_data[info.st_ino] = peek_pipe(fd_path)
        return file_id

    @staticmethod
    def _data_entries(queued):
        return [(classes["pipe_data_entry"](pipe_id=pipe_id, bytes=len(data), size=size), data)
                for pipe_id, (data, size) in queued.items()]

    def pipe_data_entries(self):
        return self._data_entries(self.pipe_data)

    def fifo_data_entries(self):
        return self._data_entries(self.fifo_data)


def _is_tty(info):
    major = os.major(info.st_rdev)
    # 4: virtual consoles and ttyS, 5: /dev/tty and ptmx, 136-143: /dev/pts/*
    return major in (4, 5) or 136 <= major <= 143


class _borrow_fd:
    """Duplicate a frozen process's fd into hiber for the time of a with block."""

    def __init__(self, pid, fd):
        self.pid, self.fd, self.ours = pid, fd, None

    def __enter__(self):
        from ..kernel.sys import pidfd_getfd, pidfd_open
        pidfd = pidfd_open(self.pid)
        try:
            self.ours = pidfd_getfd(pidfd, self.fd)
        finally:
            os.close(pidfd)
        return self.ours

    def __exit__(self, *exc):
        os.close(self.ours)


def peek_pipe(fd_path):
    """(queued bytes, capacity) of a pipe, without consuming the data.

    Opening /proc/PID/fd/N of a pipe read-only gives a new read end of the
    same pipe whichever end N is; tee() copies the queued data into a pipe
    of ours without taking it out of the original (spec §2.16).
    """
    src = os.open(fd_path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        size = fcntl.fcntl(src, F_GETPIPE_SZ)
        r, w = os.pipe2(os.O_NONBLOCK)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, size)
            chunks = []
            try:
                n = tee(src, w, size, SPLICE_F_NONBLOCK)
            except OSError as e:
                if e.errno != errno.EAGAIN:  # EAGAIN: the pipe is empty
                    raise
                n = 0
            while n > 0:
                chunk = os.read(r, n)
                chunks.append(chunk)
                n -= len(chunk)
            return b"".join(chunks), size
        finally:
            os.close(r)
            os.close(w)
    finally:
        os.close(src)


def dump_fds(pid, table, shell_job):
    """fdinfo entries of one process, ascending fd."""
    out = []
    for fd in proc.fds(pid):
        fdinfo = proc.fdinfo(pid, fd)
        file_id, kind = table.describe_fd(pid, fd, fdinfo, shell_job)
        fd_flags = 1 if int(fdinfo["flags"], 8) & O_CLOEXEC else 0
        out.append(classes["fdinfo_entry"](id=file_id, flags=fd_flags, type=kind, fd=fd))
    return out


def dump_fs(pid, table, umask):
    cwd = table.path_entry(pid, f"/proc/{pid}/cwd", "cwd")
    root = table.path_entry(pid, f"/proc/{pid}/root", "root")
    return classes["fs_entry"](cwd_id=cwd, root_id=root, umask=umask)


# ---- restore half: runs inside the stub, while it is still a copy of hiber --

F_DUPFD = 0
O_STATUS_FLAGS = os.O_APPEND | os.O_NONBLOCK | os.O_DIRECT | os.O_NOATIME | getattr(os, "O_ASYNC", 0o20000)


def high_dup(fd, floor):
    """Move fd to the lowest free number >= floor; close the original."""
    new = fcntl.fcntl(fd, F_DUPFD, floor)
    os.close(fd)
    return new


def is_terminal_path(path):
    try:
        info = os.stat(path)
    except OSError:
        return path.startswith(("/dev/pts/", "/dev/tty"))
    return st.S_ISCHR(info.st_mode) and _is_tty(info)


def _open_reg(reg, floor, shell_tty=None):
    flags = reg.flags & ~(O_CLOEXEC | os.O_CREAT | os.O_TRUNC | os.O_EXCL)
    name = reg.name
    if shell_tty and is_terminal_path(name):
        # a shell job gets the terminal hiber runs on, as criu --shell-job does
        name = shell_tty
    fd = os.open(name, flags | os.O_NOCTTY)
    if reg.pos and not stat_is_char(fd):
        os.lseek(fd, reg.pos, os.SEEK_SET)
    return high_dup(fd, floor)


def stat_is_char(fd):
    return st.S_ISCHR(os.fstat(fd).st_mode)


class StubFiles:
    """Opens every file object of a process at a high temporary number, then
    puts each fd at its number. Objects shared by several fds are opened once
    and dup'ed, so they stay one open file (shared position and flags)."""

    def __init__(self, files_by_id, pipe_data, fifo_data, shared, floor, shell_tty=None):
        self.files = files_by_id
        self.shell_tty = shell_tty      # hiber's terminal, for a shell job's tty fds
        self.pipe_data = pipe_data      # pipe_id -> (bytes, size)
        self.fifo_data = fifo_data
        self.shared = shared            # shmem.StubObjects, for memfd fds
        self.floor = floor
        self.opened = {}                # file id -> temporary fd
        self._pipes = {}                # pipe_id -> [read fd, write fd]
        self._fifo_keepers = {}         # pipe_id -> read-write fd keeping the FIFO open

    def open_object(self, file_id):
        if file_id in self.opened:
            return self.opened[file_id]
        f = self.files[file_id]
        if f.HasField("reg"):
            fd = _open_reg(f.reg, self.floor, self.shell_tty)
        elif f.HasField("pipe"):
            fd = self._pipe_end(f.pipe)
        elif f.HasField("fifo"):
            fd = self._fifo_end(f.fifo)
        elif f.HasField("memfd"):
            fd = self.shared.reopen(f.memfd.inode_id, f.memfd.flags, f.memfd.pos, self.floor)
        else:
            raise UnsupportedFile(f"file #{file_id} of type {f.type} cannot be restored yet")
        self.opened[file_id] = fd
        return fd

    def _pipe_end(self, entry):
        ends = self._pipes.get(entry.pipe_id)
        if ends is None:
            r, w = os.pipe()
            r, w = high_dup(r, self.floor), high_dup(w, self.floor)
            data, size = self.pipe_data.get(entry.pipe_id, (b"", 0))
            _fill_pipe(w, data, size)
            ends = self._pipes[entry.pipe_id] = [r, w]
        write_end = entry.flags & O_ACCMODE == os.O_WRONLY
        fd = ends[1] if write_end else ends[0]
        if fd is None:  # a second open file of the same end: a new description
            fd = high_dup(os.open(f"/proc/self/fd/{ends[1 - write_end]}",
                                  os.O_WRONLY if write_end else os.O_RDONLY), self.floor)
        else:
            ends[1 if write_end else 0] = None
        _set_status_flags(fd, entry.flags)
        return fd

    def _fifo_end(self, entry):
        reg = self.files[entry.regf_id].reg
        if entry.pipe_id not in self._fifo_keepers:
            # a read-write open never blocks and keeps the FIFO's buffer alive
            keeper = high_dup(os.open(reg.name, os.O_RDWR | os.O_NONBLOCK), self.floor)
            data, size = self.fifo_data.get(entry.pipe_id, (b"", 0))
            _fill_pipe(keeper, data, size)
            self._fifo_keepers[entry.pipe_id] = keeper
        flags = reg.flags & ~O_CLOEXEC
        fd = high_dup(os.open(reg.name, (flags & O_ACCMODE) | os.O_NONBLOCK), self.floor)
        _set_status_flags(fd, flags)
        return fd

    def install(self, fdinfo_entries):
        """Open every object, put every fd at its number, with its FD_CLOEXEC."""
        for e in fdinfo_entries:
            self.open_object(e.id)
        for e in fdinfo_entries:
            os.dup2(self.opened[e.id], e.fd, inheritable=not e.flags & 1)
        self.close_temporaries()

    def close_temporaries(self):
        for fd in set(self.opened.values()):
            os.close(fd)
        for ends in self._pipes.values():
            for fd in ends:
                if fd is not None:
                    os.close(fd)  # an end no fd of the process had
        for keeper in self._fifo_keepers.values():
            os.close(keeper)
        self.opened.clear()
        self._pipes.clear()
        self._fifo_keepers.clear()


def _set_status_flags(fd, flags):
    wanted = flags & O_STATUS_FLAGS
    current = fcntl.fcntl(fd, fcntl.F_GETFL)
    if current & O_STATUS_FLAGS != wanted:
        fcntl.fcntl(fd, fcntl.F_SETFL, (current & ~O_STATUS_FLAGS) | wanted)


def _fill_pipe(write_fd, data, size):
    if size:
        try:
            fcntl.fcntl(write_fd, F_SETPIPE_SZ, size)
        except OSError:
            pass  # a smaller pipe still holds what a default one holds
    if data:
        write_all(write_fd, data)
