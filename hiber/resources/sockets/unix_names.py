"""The names unix sockets are bound to, and their files on disk.

A unix socket is bound to nothing, to an abstract name (a first byte of 0:
nothing on disk) or to a path, whose socket file has a mode and an owner.

Dump: for a path, SIOCUNIXFILE (Linux 4.11) gives an O_PATH fd of the very
file the socket was bound to (unix_open_file), whatever became of its name
since: its mode and owner go to file_perms; its path, which the kernel
suffixes with " (deleted)" when the file was unlinked or replaced since,
tells `deleted`; for a relative name the directory it was bound in is that
path less the name, name_dir (CRIU's unix_resolve_name).

Restore, in the stub: stale socket files are removed from the names about
to be bound; a socket is bound in name_dir for a relative name, then given
the file's mode and owner. One whose file was deleted is bound at its name
all the same, the directories on the way made for the time it takes, what
lies at the name now moved aside and put back; its file is then unlinked,
an O_PATH fd of it kept so that its peers can connect through
/proc/self/fd/N (connect() follows the link to the socket's inode:
unix_find_bsd). The files bound here are removed if the restore fails.
"""

import contextlib
import errno
import fcntl
import os
import stat

from ...kernel import sock_diag
from ..files.common import UnsupportedFile

SIOCUNIXFILE = 0x89E0   # SIOCPROTOPRIVATE + 0 (include/uapi/linux/un.h)
DELETED = " (deleted)"
GHOST_SUFFIX = b".hiber-sk-ghost"
UNIX_PATH_MAX = 108


def is_path(name):
    """Whether a unix address names a file (not abstract, not empty)."""
    return bool(name) and name[:1] != b"\0"


def path_of(name):
    """The path of a path name (the kernel keeps the NUL that ends it)."""
    return name.split(b"\0", 1)[0]


def name_in_words(name):
    if not name:
        return "no name"
    if not is_path(name):
        return "@" + name[1:].decode(errors="backslashreplace").replace("\0", "@")
    return path_of(name).decode(errors="backslashreplace")


def same_address(a, b):
    """Whether two addresses name the same socket (a path as the kernel
    reads it: up to its first NUL)."""
    if is_path(a) and is_path(b):
        return path_of(a) == path_of(b)
    return a == b and bool(a)


# ---- dump ------------------------------------------------------------------------

def describe_file(sock_fd, name, where):
    """(file_perms as (mode, uid, gid), deleted, name_dir or None) of the
    file a socket (hiber's fd of it) was bound to at path ``name``."""
    try:
        file_fd = fcntl.ioctl(sock_fd, SIOCUNIXFILE)
    except OSError as e:
        raise UnsupportedFile(f"{where} is bound to {name_in_words(name)}, and its file "
                              f"cannot be opened (SIOCUNIXFILE: {e.strerror})") from None
    try:
        info = os.fstat(file_fd)
        link = os.readlink(f"/proc/self/fd/{file_fd}")
    finally:
        os.close(file_fd)
    deleted = link.endswith(DELETED)
    if deleted:
        link = link[:-len(DELETED)]
    path = os.fsdecode(path_of(name))
    name_dir = None
    if not path.startswith("/"):
        name_dir = _directory_of(link, path)
        if name_dir is None:
            raise UnsupportedFile(f"{where} is bound to the relative name {path}, and its "
                                  f"file {link} does not end with it: hiber cannot tell the "
                                  "directory it was bound in")
    return (info.st_mode, info.st_uid, info.st_gid), deleted, name_dir


def _directory_of(link, relative):
    """The directory in which ``relative`` names ``link``."""
    tail = "/" + os.path.normpath(relative)
    if ".." in tail.split("/") or not link.endswith(tail):
        return None
    return link[:-len(tail)] or "/"


# ---- restore ---------------------------------------------------------------------

@contextlib.contextmanager
def in_dir(name_dir, where=None):
    """Work in ``name_dir`` for a while (a relative name is bound and
    reached there); back where the stub was afterwards. ``where`` names
    the socket in the refusal of a directory that is no more."""
    if not name_dir:
        yield
        return
    back = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.chdir(name_dir)
        except OSError as e:
            if where is None:
                raise
            raise UnsupportedFile(f"{where} was bound in {name_dir}, which cannot be entered "
                                  f"now: {e.strerror}") from None
        yield
    finally:
        os.fchdir(back)
        os.close(back)


class BoundFiles:
    """The socket files of one restore: bound, and kept for the peers of the
    deleted ones."""

    def __init__(self):
        self.ghosts = {}    # file id -> O_PATH fd of a bound file deleted since
        self.made = []      # absolute paths of socket files bound here
        self._living = None  # (inode, s_dev) of the files living sockets are bound to

    def remove_stale(self, entry, where):
        """A socket file left at the name ``entry`` binds (by the dumped
        process, or a run before it) is removed: bind() would fail on it.
        Any other file stays, and the bind says so; so does the file of a
        socket bound there now, which is refused."""
        path = path_of(entry.usk.name)
        try:
            with in_dir(entry.usk.name_dir):
                info = os.lstat(path)
                if not stat.S_ISSOCK(info.st_mode):
                    return
                if self._living is None:
                    self._living = sock_diag.unix_bound_files()
                s_dev = os.major(info.st_dev) << 20 | os.minor(info.st_dev)
                if (info.st_ino, s_dev) in self._living:
                    raise UnsupportedFile(f"{where} is to be bound to "
                                          f"{name_in_words(entry.usk.name)}, where a living "
                                          "socket is bound now: stop the process that holds "
                                          "it, or remove the file, and restore again")
                os.unlink(path)
        except FileNotFoundError:
            pass  # nothing there, or no directory: bind() tells which

    def bind(self, sock, entry, where):
        usk = entry.usk
        try:
            if not is_path(usk.name):
                sock.bind(usk.name)
                return
            path = path_of(usk.name)
            with in_dir(usk.name_dir, where):
                if usk.deleted:
                    self._bind_deleted(sock, entry, path)
                else:
                    sock.bind(path)
                    self._made(path)
                    self._give_perms(path, usk)
        except OSError as e:
            raise UnsupportedFile(f"{where}: cannot bind it to {name_in_words(usk.name)}"
                                  f"{' (in ' + usk.name_dir + ')' if usk.name_dir else ''}"
                                  f": {e.strerror}") from None

    def _made(self, path):
        self.made.append(os.path.join(os.getcwd().encode(), path))

    @staticmethod
    def _give_perms(path, usk):
        """The mode and owner of the file just bound, through an fd of it:
        what lies at the path is checked to be that socket file, not a link
        put there since."""
        if not usk.HasField("file_perms"):
            return
        perms = usk.file_perms
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                raise OSError(errno.EEXIST, "another file took its place")
            # an O_PATH fd takes no fchmod: its /proc link reaches the inode
            os.chown(f"/proc/self/fd/{fd}", perms.uid, perms.gid)
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(perms.mode))
        finally:
            os.close(fd)

    def _bind_deleted(self, sock, entry, path):
        """Bind at a name whose file was unlinked or replaced since: a file
        there now is moved aside while it takes, missing directories are
        made for the time it takes, and the socket's own file is unlinked
        once an O_PATH fd of it is kept for its peers."""
        made_dirs = _make_parents(os.path.dirname(path))
        parked = None
        try:
            if os.path.lexists(path):
                parked = path + GHOST_SUFFIX
                if os.path.lexists(parked):
                    raise OSError(errno.EEXIST, f"{os.fsdecode(parked)} is in the way of "
                                                "moving the file there now aside")
                os.rename(path, parked)
            try:
                sock.bind(path)
                try:
                    self._give_perms(path, entry.usk)
                    self.ghosts[entry.id] = os.open(path, os.O_PATH | os.O_CLOEXEC)
                finally:
                    os.unlink(path)
            finally:
                if parked is not None:
                    os.rename(parked, path)
        finally:
            for d in reversed(made_dirs):
                os.rmdir(d)

    def address(self, entry):
        """What reaches the socket of ``entry`` (bound here, or a living
        socket outside the tree): its name, or for a deleted file the
        O_PATH fd kept of it; None for an unbound socket. A relative name
        is reached in entry.usk.name_dir (in_dir)."""
        if entry.id in self.ghosts:
            return f"/proc/self/fd/{self.ghosts[entry.id]}".encode()
        name = entry.usk.name
        if not name:
            return None
        return path_of(name) if is_path(name) else name

    def close(self):
        for fd in self.ghosts.values():
            os.close(fd)
        self.ghosts.clear()

    def remove_made(self):
        """After a failure: the files bound here go."""
        for path in self.made:
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
        self.made.clear()


def _make_parents(directory):
    """Make the missing directories of ``directory``; returns those made,
    outermost first."""
    missing = []
    while directory and not os.path.lexists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    made = []
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        made.append(d)
    return made


def check_name(entry, where):
    """Before a restore: a name bind() could not take."""
    usk = entry.usk
    if len(usk.name) > UNIX_PATH_MAX:
        raise UnsupportedFile(f"{where} is bound to a name of {len(usk.name)} bytes, longer "
                              f"than a unix address holds ({UNIX_PATH_MAX})")
    if usk.deleted and not is_path(usk.name):
        raise UnsupportedFile(f"{where} is marked deleted but has no path name")
    if usk.name_dir and not usk.name_dir.startswith("/"):
        raise UnsupportedFile(f"{where}: its name_dir {usk.name_dir} is not absolute")
