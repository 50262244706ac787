"""Files gone from the file system while the tree holds them (open, mapped,
its cwd or root), kept as CRIU 4.2 keeps them: a file entry keeps its old
name, and remap-fpath.img says what to open in its place.

    GHOST   a file no name reaches any more (no link left): its contents go
            to ghost-file-N.img (whole, or as the extents holding data, so a
            sparse file stays sparse), up to --ghost-limit bytes on disk;
            restore makes it again next to its old name, as NAME.cr.N.ghost
            (a directory at its old name), opens it, and removes it before
            the tree runs, so the processes hold a deleted file again.
    LINKED  a file still linked elsewhere, under a name hiber cannot tell:
            the dump gives it one more link, link_remap.N beside its old
            name, for the restore to open and then remove.

Directories, FIFOs, devices and symlinks are made again as what they were
(their data, for a FIFO, is the pipe's: fifo.py)."""

import ctypes
import errno
import os
import stat as st

from ...errors import RestoreError
from ...images.messages import classes
from ...kernel import sys
from .common import UnsupportedFile

REMAP_LINKED, REMAP_GHOST = 0, 1
DEFAULT_GHOST_LIMIT = 1 << 20   # criu's --ghost-limit default
CHUNKS_FROM = 3 * 4096          # smaller files are written whole (as criu)
DELETED = " (deleted)"


def stripped(link):
    return link[:-len(DELETED)] if link.endswith(DELETED) else link


def is_gone(link, info):
    """Whether the file a /proc link names is not reachable by that name."""
    if not link.endswith(DELETED):
        return False
    try:
        now = os.stat(stripped(link), follow_symlinks=not st.S_ISLNK(info.st_mode))
    except OSError:
        return True
    return (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino)


class Remaps:
    """The dump's remaps: remap-fpath.img and the ghost files' images."""
    name = "remaps"

    def __init__(self, table, add_entry):
        self.table = table
        self.add_entry = add_entry  # regular.add_entry: a link remap is a regular file's entry
        self.limit = getattr(table.options, "ghost_limit", DEFAULT_GHOST_LIMIT)
        self.entries = []     # remap_file_path_entry
        self.ghosts = {}      # (dev, ino) -> ghost id
        self.sources = {}     # ghost id -> (entry, fd of the file, or None)
        self.links = []       # link remaps made by this dump

    def remap(self, file_id, source, path, info):
        """file_id's file is gone from path: a ghost of it, or a link to it.
        source: a /proc path to the file (an fd's, a mapping's)."""
        if info.st_nlink > 0 and not st.S_ISDIR(info.st_mode):
            self._link(file_id, source, path, info)
        else:
            self._ghost(file_id, source, path, info)

    def _ghost(self, file_id, source, path, info):
        if info.st_blocks * 512 > self.limit:
            raise UnsupportedFile(f"{path} was deleted, and its {info.st_blocks * 512} bytes on "
                                  f"disk are more than --ghost-limit ({self.limit}): raise the "
                                  "limit to dump it")
        key = (info.st_dev, info.st_ino)
        if key not in self.ghosts:
            ghost_id = len(self.ghosts) + 1
            self.ghosts[key] = ghost_id
            self.sources[ghost_id] = (_ghost_entry(source, info), _open_contents(source, info))
        self.entries.append(classes["remap_file_path_entry"](
            orig_id=file_id, remap_id=self.ghosts[key], remap_type=REMAP_GHOST))

    def _link(self, file_id, source, path, info):
        where = os.path.join(os.path.dirname(path), f"link_remap.{file_id}")
        try:
            _link_in_mount(source, where)
        except OSError as e:
            raise UnsupportedFile(f"{path} was renamed or deleted while still linked "
                                  f"elsewhere, and no link to it can be made at {where} "
                                  f"({e.strerror})") from None
        self.links.append(where)
        link_id = self.add_entry(self.table, where, info)
        self.entries.append(classes["remap_file_path_entry"](
            orig_id=file_id, remap_id=link_id, remap_type=REMAP_LINKED))

    def write_images(self, images):
        if self.entries:
            images.write("REMAP_FPATH", None, self.entries)
        for ghost_id, (entry, fd) in self.sources.items():
            images.write("GHOST_FILE", ghost_id, [(entry, b"")] if entry.chunks else
                         [(entry, _whole(fd, entry.size) if fd is not None else b"")])
            if entry.chunks:
                _write_chunks(images.file_path("GHOST_FILE", ghost_id), fd, entry.size)

    def finish(self):
        pass

    def close(self, failed):
        for _, fd in self.sources.values():
            if fd is not None:
                os.close(fd)
        self.sources = {ghost_id: (e, None) for ghost_id, (e, _) in self.sources.items()}
        if failed:  # the links a failed dump made are its to remove
            for where in self.links:
                try:
                    os.unlink(where)
                except OSError:
                    pass


AT_EMPTY_PATH = 0x1000


def _link_in_mount(source, where):
    """One more name for the file `source` (a /proc/PID/... link) opens:
    linked from the file itself (AT_EMPTY_PATH) into the directory as the
    process sees it (through /proc/PID/root), as a link may not cross
    mounts and hiber's view of the path may be another mount than the
    process's file is on."""
    pid = source.split("/")[2]
    target = os.open(source, os.O_PATH | os.O_CLOEXEC)
    try:
        directory = os.open(f"/proc/{pid}/root{os.path.dirname(where)}",
                            os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if sys.libc.linkat(target, b"", directory, os.path.basename(where).encode(),
                               AT_EMPTY_PATH) < 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
        finally:
            os.close(directory)
    finally:
        os.close(target)


def _ghost_entry(source, info):
    e = classes["ghost_file_entry"](uid=info.st_uid, gid=info.st_gid, mode=info.st_mode,
                                    dev=info.st_dev & 0xffffffff, ino=info.st_ino)
    if st.S_ISCHR(info.st_mode) or st.S_ISBLK(info.st_mode):
        e.rdev = info.st_rdev & 0xffffffff
    e.atim.tv_sec, e.atim.tv_usec = info.st_atime_ns // 10**9, info.st_atime_ns % 10**9 // 1000
    e.mtim.tv_sec, e.mtim.tv_usec = info.st_mtime_ns // 10**9, info.st_mtime_ns % 10**9 // 1000
    if st.S_ISREG(info.st_mode):
        e.size = info.st_size
        if info.st_size >= CHUNKS_FROM:
            e.chunks = True
    if st.S_ISLNK(info.st_mode):
        e.symlnk_target = _symlink_target(source)
    return e


def _symlink_target(source):
    """What a symlink held by an O_PATH fd points to: readlinkat(fd, "") on
    the process's fd itself (its /proc link names the symlink, not where it
    points)."""
    from .common import borrow_fd
    _, _, pid, _, fd = source.split("/")[:5]
    with borrow_fd(int(pid), int(fd)) as ours:
        buf = ctypes.create_string_buffer(4096)
        n = sys.libc.readlinkat(ours, b"", buf, len(buf))
        if n < 0:
            e = ctypes.get_errno()
            raise UnsupportedFile(f"{source}: cannot read the symlink: {os.strerror(e)}")
        return buf.raw[:n].decode(errors="surrogateescape")


def _open_contents(source, info):
    if not st.S_ISREG(info.st_mode):
        return None
    return os.open(source, os.O_RDONLY | os.O_CLOEXEC)  # root reads whatever the mode


def _whole(fd, size):
    return os.pread(fd, size, 0)


def _write_chunks(path, fd, size):
    """Each extent holding data: its ghost_chunk_entry, then its bytes."""
    from ...images.framing import write_entry
    with open(path, "ab") as out:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break  # only a hole is left
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            write_entry(out, classes["ghost_chunk_entry"](len=end - start, off=start))
            done = start
            while done < end:
                data = os.pread(fd, min(end - done, 1 << 22), done)
                if not data:
                    raise UnsupportedFile(f"ghost file: reading it ended at {done}")
                out.write(data)
                done += len(data)
            offset = end


# ---- restore --------------------------------------------------------------------

def read_remaps(images):
    """{orig file id: (remap type, remap id)} of remap-fpath.img."""
    return {r.orig_id: (r.remap_type, r.remap_id)
            for r in images.read_optional("REMAP_FPATH")}


class MadeAgain:
    """The ghosts and link remaps of a restore: made before the stubs open
    their files, removed once they hold them (or the restore failed)."""

    def __init__(self, images, files):
        self.images, self.files = images, files
        self.made = []       # paths of ghosts made, to remove
        self.links = []      # link remaps to remove

    def make(self):
        remaps = read_remaps(self.images)
        ghosts = {}
        for orig_id, (kind, remap_id) in sorted(remaps.items()):
            entry = self.files.entry(orig_id).reg
            if kind == REMAP_LINKED:
                link = self.files.entry(remap_id).reg.name
                if not os.path.lexists(link):
                    raise RestoreError(f"{link}, the link to the deleted {entry.name} the "
                                       "dump made, is gone: the file cannot be restored")
                if link not in self.links:
                    self.links.append(link)
                entry.name = link
            elif kind == REMAP_GHOST:
                if remap_id not in ghosts:
                    ghosts[remap_id] = self._ghost(remap_id, entry.name)
                entry.name = ghosts[remap_id]
            else:
                raise RestoreError(f"remap-fpath.img: file #{orig_id} is remapped in a way "
                                   f"hiber does not know ({kind})")

    def _ghost(self, ghost_id, name):
        entries = self.images.read_entries("GHOST_FILE", ghost_id)
        g = entries[0].message
        path = name if st.S_ISDIR(g.mode) else f"{name}.cr.{ghost_id:x}.ghost"
        while True:
            try:
                self._create(path, g, entries)
                break
            except FileNotFoundError:
                # its directory is gone too: the ghost goes one level up, as criu's
                parent = os.path.dirname(os.path.dirname(path))
                if parent in ("", "/") and os.path.dirname(path) in ("", "/"):
                    raise
                path = os.path.join(parent, os.path.basename(path))
        self.made.append(path)
        os.chown(path, g.uid, g.gid, follow_symlinks=False)
        if not st.S_ISLNK(g.mode):
            os.chmod(path, st.S_IMODE(g.mode))
        if g.HasField("atim"):
            os.utime(path, ns=(g.atim.tv_sec * 10**9 + g.atim.tv_usec * 1000,
                               g.mtim.tv_sec * 10**9 + g.mtim.tv_usec * 1000),
                     follow_symlinks=False)
        return path

    def _create(self, path, g, entries):
        mode = g.mode
        if st.S_ISDIR(mode):
            os.mkdir(path, st.S_IMODE(mode))
        elif st.S_ISFIFO(mode) or st.S_ISCHR(mode) or st.S_ISBLK(mode):
            os.mknod(path, mode, g.rdev if g.HasField("rdev") else 0)
        elif st.S_ISLNK(mode):
            os.symlink(g.symlnk_target, path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                if g.chunks:
                    os.ftruncate(fd, g.size)  # the holes stay holes
                    for chunk in entries[1:]:
                        _write_at(fd, chunk.extra, chunk.message.off)
                else:
                    _write_at(fd, entries[0].extra or b"", 0)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
            os.close(fd)

    def remove(self):
        """The ghosts and links go: the processes hold them, deleted, again."""
        for path in reversed(self.made):
            try:
                os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) \
                    else os.unlink(path)
            except OSError:
                pass
        for link in self.links:
            try:
                os.unlink(link)
            except OSError:
                pass
        self.made, self.links = [], []


def _write_at(fd, data, offset):
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
