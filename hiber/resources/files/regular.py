"""Regular files, directories and devices, which CRIU stores alike as REG
entries (reg_file_entry: path, open flags, position, owner; the size and
ELF build-id of a regular file, spec §2.15).

The files a process holds without an fd are REG entries too: its exe, cwd
and root, and the files its VMAs map (one entry per file, whatever the
number of mappings).
"""

import logging
import os
import re
import stat as st

from ...errors import RestoreError
from ...images.messages import classes
from . import ghost
from .common import O_ACCMODE, O_APPEND, O_CLOEXEC, UnsupportedFile, high_dup
from .owners import no_owner
from .table import FD_TYPES, Kind

log = logging.getLogger(__name__)
PROC_PID_FILE = re.compile(r"^/proc/(\d+)(/|$)")
O_TMPFILE = os.O_TMPFILE  # __O_TMPFILE | O_DIRECTORY


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


# ---- dump --------------------------------------------------------------------

def add_entry(table, path, info, flags=0, pos=0, fown=None, size_check=True):
    """A REG entry for ``path`` (stat ``info``); returns its file id."""
    reg = classes["reg_file_entry"](id=0, flags=flags, pos=pos, fown=fown or no_owner(),
                                    name=path)
    if st.S_ISREG(info.st_mode) and size_check:
        reg.size = info.st_size
    reg.mode = info.st_mode
    if st.S_ISREG(info.st_mode) and info.st_mode & 0o111:
        words = build_id_words(path)
        if words:
            reg.build_id.extend(words)
    return table.add(KIND, reg)


def mapped_file(table, path, info, source=None):
    """A file that is only mapped (or is the exe): one entry per file.
    source: a /proc path to it, for a file gone from path (ghost.py)."""
    known = table.state(KIND, dict)  # (dev, ino, path) -> file id
    name = ghost.stripped(path)
    key = (info.st_dev, info.st_ino, name)
    if key not in known:
        known[key] = add_entry(table, name, info)
        remap_if_gone(table, known[key], source, path, info)
    return known[key]


def remap_if_gone(table, file_id, source, link, info):
    """A file no longer reachable by its name comes back by a remap."""
    if source is not None and ghost.is_gone(link, info):
        table.state(ghost.Remaps, lambda: ghost.Remaps(table, add_entry)).remap(
            file_id, source, ghost.stripped(link), info)


def path_entry(table, pid, link, what):
    """exe, cwd or root: a REG entry with flags 0 (spec §2.15)."""
    path = os.readlink(link)
    if of_the_tree(table, path):
        raise UnsupportedFile(f"PID {pid}: its {what} is {path}, inside the /proc directory "
                              "of a process being dumped: hiber cannot restore such files yet")
    info = os.stat(link)
    if what == "exe":
        return mapped_file(table, path, info, link)
    file_id = add_entry(table, ghost.stripped(path), info)
    remap_if_gone(table, file_id, link, path, info)
    return file_id


def of_the_tree(table, path):
    """Whether ``path`` lies in the /proc directory of a task being dumped.
    Such a cwd or root is refused: a stub enters them before the processes
    they name exist. Fds of such files are opened late (opens_late)."""
    return names_one_of(path, table.tree_tids)


def names_one_of(path, pids):
    named = PROC_PID_FILE.match(path)
    return named is not None and int(named[1]) in pids


def opens_late(files, entry):
    """A /proc/PID file of a process of the tree is opened by the stub that
    holds it, once its own subtree is made, not by the root stub before any
    other process exists: the PID is the same, so the path names the
    restored process (a file such as /proc/PID/maps holds the mm it was
    opened on, and a stub's mm is the one rebuilt into the process's)."""
    return entry.HasField("reg") and names_one_of(entry.reg.name, files.tree_pids)


def is_file_dir_or_device(fd):
    """Regular files, directories, devices; and symlinks, which only an
    O_PATH|O_NOFOLLOW open holds as themselves."""
    mode = fd.info.st_mode
    return st.S_ISREG(mode) or st.S_ISDIR(mode) or st.S_ISCHR(mode) or st.S_ISBLK(mode) \
        or st.S_ISLNK(mode)


def dump_fd(table, fd):
    if not fd.link.startswith("/"):
        raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is {fd.link}: not supported yet")
    return dump_open_file(table, fd)


def dump_open_file(table, fd):
    """The REG entry of an open file, with its flags, position and owner."""
    status_flags = fd.flags & ~O_CLOEXEC
    # O_WRONLY|O_APPEND files may grow under us: CRIU skips their size check
    size_check = not (status_flags & O_ACCMODE == 1 and status_flags & O_APPEND)
    file_id = add_entry(table, ghost.stripped(fd.link), fd.info, status_flags, fd.pos,
                        fd.owner(), size_check)
    remap_if_gone(table, file_id, f"/proc/{fd.pid}/fd/{fd.fd}", fd.link, fd.info)
    return file_id


# ---- restore -------------------------------------------------------------------

def check(files, entry):
    if names_one_of(entry.reg.name, files.tree_pids):
        return  # a file of a process this restore makes: there once it is
    if entry.id in files.data(KIND):
        return  # gone at the dump: its ghost or link is made, or checked, first
    check_file(entry.reg)


def check_file(reg):
    """The file is there, with the size it had (when its size was recorded)."""
    try:
        info = os.stat(reg.name, follow_symlinks=not (reg.HasField("mode")
                                                      and st.S_ISLNK(reg.mode)))
    except OSError as e:
        raise RestoreError(f"{reg.name}: {e.strerror}; the process had it open or mapped "
                           "and needs it back") from None
    if reg.HasField("size") and info.st_size != reg.size:
        raise RestoreError(f"{reg.name} changed size since the dump ({reg.size} bytes then, "
                           f"{info.st_size} now): restoring would corrupt the process")
    if reg.build_id and st.S_ISREG(info.st_mode) and build_id_words(reg.name) != list(reg.build_id):
        # the same size is no proof of the same program (CRIU's build-id check)
        raise RestoreError(f"{reg.name} is not the ELF file of the dump (its build-id differs): "
                           "the process would run code it never had")


def open_entry(stub, entry):
    return open_file(entry.reg, stub.floor)


def open_file(reg, floor, name=None):
    """A new open file of ``reg`` (or of ``name`` in its place), with its
    flags and position, at a number >= floor."""
    flags = reg.flags & ~(O_CLOEXEC | os.O_CREAT | os.O_TRUNC | os.O_EXCL)
    if flags & O_TMPFILE == O_TMPFILE:
        # made by open(O_TMPFILE) in a directory: the file itself comes back
        flags &= ~O_TMPFILE
    fd = os.open(name or reg.name, flags | os.O_NOCTTY)
    if reg.pos and not st.S_ISCHR(os.fstat(fd).st_mode):
        os.lseek(fd, reg.pos, os.SEEK_SET)
    return high_dup(fd, floor)


def map_fd(stub, entry, mode):
    """An fd to mmap the file from, opened as the dumped mapping had it."""
    return high_dup(os.open(entry.reg.name, mode), stub.floor)


KIND = Kind(name="regular file", fd_type=FD_TYPES["REG"], entry_field="reg",
            match=is_file_dir_or_device, dump=dump_fd, check=check, open=open_entry,
            label=lambda entry: entry.reg.name, map_fd=map_fd,
            read_images=ghost.read_remaps)
