"""The VMAs of a process: mm-PID.img (spec §2.12-§2.13).

Each mapping of /proc/PID/smaps becomes a vma_entry classified as CRIU's
parse_smaps/handle_vma classify it (spec §3.1-§3.3): anonymous or
file-backed, private or shared, heap, stack, vdso/vvar/vsyscall, guard
regions. What hiber cannot dump (io_uring rings, device memory, SysV shared
memory, deleted files, [uprobes] unless allowed) is refused naming the pid,
the range and the kind. The pages are pages.py's.
"""

import logging
import os
import stat as st
from dataclasses import dataclass

from ..errors import HiberError
from ..images import vma as V
from ..images.messages import classes
from ..images.pagemap import PAGE_SIZE
from ..kernel import pagescan, proc
from . import aio, mlock, vdso, vmanames
from .files.memfd import ANON_HUGETLB_PATH, is_shmem_path

log = logging.getLogger(__name__)

VmaEntry = classes["vma_entry"]

# VmFlags two-letter codes (proc(5)) -> madvise advice number (spec §2.13)
MADV_BITS = {"rr": 1, "sr": 2, "dc": 10, "mg": 12, "hg": 14, "nh": 15, "dd": 16, "wf": 18}
# VmFlags -> mmap flags kept in vma_entry.flags
MAP_FLAG_BITS = {"gd": V.MAP_GROWSDOWN, "lo": V.MAP_LOCKED, "nr": V.MAP_NORESERVE,
                 "ht": V.MAP_HUGETLB}
# "dp": MAP_DROPPABLE is a mapping type of its own (mm/mmap.c, Linux 6.11), in
# place of MAP_PRIVATE, not a flag beside it


class UnsupportedMapping(HiberError):
    pass


class UprobesFound(HiberError):
    def __init__(self, pid):
        self.pid = pid
        super().__init__(f"PID {pid} has a [uprobes] mapping: check which uprobes are "
                         "attached to it and re-run with --allow-uprobes")


# Linux 6.18 optimizes a uprobe on a 5-byte nop: after its first hit the nop
# becomes a call into this area.  The call stays in the process's text, so
# restoring it without the kernel's area would jump into nothing.
OPTIMIZED_UPROBES = "[uprobes-trampoline]"


class OptimizedUprobesFound(HiberError):
    def __init__(self, pid, start):
        super().__init__(f"PID {pid} has optimized uprobes ({OPTIMIZED_UPROBES} at "
                         f"0x{start:x}: probes on 5-byte nops, patched into calls): hiber "
                         "cannot restore such patched code yet; remove those probes, or "
                         "probe another instruction, and dump again")


def refuse_uprobes(pid, mapping, allow_uprobes):
    """Before anything is collected: [uprobes] needs --allow-uprobes, and
    optimized uprobes are refused either way."""
    if mapping.path == OPTIMIZED_UPROBES and mapping.inode == 0:
        raise OptimizedUprobesFound(pid, mapping.start)
    if mapping.path == "[uprobes]" and mapping.inode == 0 and not allow_uprobes:
        raise UprobesFound(pid)


@dataclass
class ProcessVmas:
    vmas: list            # vma_entry messages, image order
    had_uprobes: bool     # a [uprobes] area was skipped (--allow-uprobes)


def collect(pid, files, allow_uprobes=False):
    """Every VMA of a frozen process, classified; a vdso proxy left by an
    earlier restore recognised; guard regions appended last (spec §3.3).
    ``files`` (the dump's FileTable) gives the mapped files their ids."""
    classifier = VmaClassifier(pid, files, allow_uprobes)
    vmas = vdso.recognise_proxy(pid, classifier.collect_vmas())
    vmas += guard_regions(pid)
    return ProcessVmas(vmas, classifier.had_uprobes)


def guard_regions(pid):
    """MADV_GUARD_INSTALL ranges as pseudo-VMAs (spec §3.3). Kernels
    without PAGE_IS_GUARD have none to find."""
    guards = []
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for start, end, _ in pagescan.scan(fd, 0, V.TASK_SIZE,
                                           required=pagescan.PAGE_IS_GUARD,
                                           report=pagescan.PAGE_IS_GUARD):
            guards.append(VmaEntry(start=start, end=end, pgoff=0, shmid=0, prot=0,
                                   flags=0, status=V.VMA_AREA_GUARD, fd=-1))
    except pagescan.ScanUnsupported:
        log.debug("PAGEMAP_SCAN cannot report guard regions here")
    finally:
        os.close(fd)
    return guards


def _link_open_mode(pid, m):
    """O_RDONLY/O_WRONLY/O_RDWR from the map_files link's mode (spec §2.13)."""
    try:
        mode = os.lstat(proc.map_file_path(pid, m.start, m.end)).st_mode
    except FileNotFoundError:
        return None
    readable, writable = mode & st.S_IRUSR, mode & st.S_IWUSR
    return 2 if readable and writable else 1 if writable else 0


class VmaClassifier:
    """Turns the mappings of one process into vma_entry messages."""

    def __init__(self, pid, files, allow_uprobes=False):
        self.pid = pid
        self.files = files              # the dump's FileTable
        self.allow_uprobes = allow_uprobes
        self.vmas = []                  # vma_entry messages, image order
        self.had_uprobes = False

    def collect_vmas(self):
        mappings = proc.smaps(self.pid)
        for m in mappings:
            entry = self._vma_entry(m)
            if entry is None:
                continue
            previous = self.vmas[-1] if self.vmas else None
            if (entry.status & V.VMA_AREA_VVAR and previous is not None
                    and previous.status & V.VMA_AREA_VVAR):
                # [vvar] + [vvar_vclock] become one entry (spec §3.3)
                if previous.end != entry.start:
                    raise UnsupportedMapping(f"PID {self.pid}: two vvar areas that are "
                                             "not adjacent")
                previous.end = entry.end
                continue
            self.vmas.append(entry)
        return self.vmas

    def _vma_entry(self, m):
        e = VmaEntry(start=m.start, end=m.end, pgoff=0, shmid=0, prot=m.prot, flags=0,
                     status=0, fd=-1)
        madv = sum(1 << bit for code, bit in MADV_BITS.items() if code in m.vmflags)
        if madv:
            e.madv = madv
        mlock.dump_vma(m.vmflags, e)
        extra_flags = sum(bit for code, bit in MAP_FLAG_BITS.items() if code in m.vmflags)
        if "ht" in m.vmflags:
            extra_flags |= V.hugetlb_size_bits(m.page_kib * 1024)
        special = m.path if m.path.startswith("[") and m.inode == 0 else None

        if m.protection_key:
            # CRIU's vma_entry has no place for it, and the process's set of
            # allocated keys (pkey_alloc) shows nowhere, so a restore could
            # not tell which keys to take again: the memory would come back
            # under key 0, open to the code the key shut out.
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} has "
                                     f"memory protection key {m.protection_key} "
                                     "(pkey_mprotect), which hiber cannot restore yet")
        if special == "[uprobes]":
            if not self.allow_uprobes:
                raise UprobesFound(self.pid)
            self.had_uprobes = True
            return None
        if special in ("[vsyscall]", "[vectors]"):
            e.status = V.VMA_AREA_VSYSCALL | V.VMA_ANON_PRIVATE
            e.flags = V.MAP_PRIVATE | V.MAP_ANONYMOUS
            return e
        io_mapping = "io" in m.vmflags or "pf" in m.vmflags
        if special in ("[vvar]", "[vvar_vclock]"):
            e.status = V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE | V.VMA_AREA_VVAR
            e.flags = V.MAP_PRIVATE | V.MAP_ANONYMOUS
            return e
        if aio.is_ring(m.path):
            # its pages are dumped whole, and the context made again (aio.py)
            e.status = V.VMA_AREA_AIORING
            e.flags = V.MAP_SHARED | V.MAP_ANONYMOUS
            return e
        if m.path.startswith("anon_inode:"):
            # io_uring rings, perf buffers, DRM objects ...
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} is "
                                     f"a {m.path.split(' ')[0]} mapping, which hiber cannot "
                                     "dump yet")
        if m.path.startswith("[anon_shmem:"):  # a shmem inode: not "special" above
            raise UnsupportedMapping(f"PID {self.pid}: shared anonymous mapping "
                                     f"{m.start:x}-{m.end:x} is named {m.path} "
                                     "(PR_SET_VMA_ANON_NAME), which hiber cannot restore yet")
        if m.inode != 0 or (m.path.startswith("/") and not special):
            return self._file_vma(e, m, extra_flags, io_mapping)
        if io_mapping:
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} "
                                     f"{m.path or '(anonymous)'} is device/IO memory "
                                     "(VM_IO/VM_PFNMAP), which hiber cannot dump")
        if m.shared:
            raise UnsupportedMapping(f"PID {self.pid}: shared anonymous mapping "
                                     f"{m.start:x}-{m.end:x} is not supported yet")
        e.status = V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE
        if special == "[vdso]" and m.prot & 5 == 5:
            e.status |= V.VMA_AREA_VDSO
        elif special == "[heap]":
            e.status |= V.VMA_AREA_HEAP
        elif special:
            vmanames.dump_name(special, e)
        kind = V.MAP_DROPPABLE if "dp" in m.vmflags else V.MAP_PRIVATE
        e.flags = kind | V.MAP_ANONYMOUS | extra_flags
        return e

    def _file_vma(self, e, m, extra_flags, io_mapping):
        link = proc.map_file_path(self.pid, m.start, m.end)
        if m.path == ANON_HUGETLB_PATH and not m.shared:
            # private MAP_HUGETLB memory: anonymous like any private memory,
            # its pages in the task's pagemap; shmid names the hugetlbfs inode
            e.status = V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE
            e.flags = V.MAP_PRIVATE | V.MAP_ANONYMOUS | extra_flags
            e.shmid = m.inode
            return e
        if is_shmem_path(m.path):
            return self._shmem_vma(e, m, link, extra_flags)
        if m.path.startswith("/SYSV"):
            return self._sysv_vma(e, m, link, extra_flags)
        try:
            info = os.stat(link)
        except FileNotFoundError:
            raise UnsupportedMapping(f"PID {self.pid}: cannot open the file behind mapping "
                                     f"{m.start:x}-{m.end:x} ({m.path})") from None
        if st.S_ISSOCK(info.st_mode) or st.S_ISCHR(info.st_mode) and io_mapping:
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} "
                                     f"({m.path}) is a device or socket mapping, which "
                                     "hiber cannot dump")
        if io_mapping and not m.shared:
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} "
                                     f"({m.path}) is device/IO memory")
        return self._backed_by(e, m, self.files.mapped_file(m.path, info, link), extra_flags)

    def _shmem_vma(self, e, m, link, extra_flags):
        """Shared anonymous memory or a memfd: the memfd path (spec §3.2)."""
        if "ht" in m.vmflags and not m.shared:
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} is "
                                     f"a private mapping of the hugetlb file {m.path[:-10]}, "
                                     "which hiber cannot dump yet")
        # a private mapping's COWed pages go to the task's pagemap as for any
        # private file
        return self._backed_by(e, m, self.files.shmem.mapping(m.path, link), extra_flags,
                               V.VMA_AREA_MEMFD)

    def _sysv_vma(self, e, m, link, extra_flags):
        """An attached SysV shared memory segment: its contents are the IPC
        namespace's (resources/ns/ipc.py), the process is attached again by
        id (the segment's inode number is its IPC id, ipc/shm.c)."""
        size = os.stat(link).st_size
        if m.offset or m.end - m.start != (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE:
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} is part "
                                     f"of SysV shared memory segment {m.inode}; hiber attaches "
                                     "whole segments only")
        e.status = V.VMA_AREA_REGULAR | V.VMA_AREA_SYSVIPC
        e.flags = V.MAP_SHARED | extra_flags
        e.shmid = m.inode
        return e

    def _backed_by(self, e, m, file_id, extra_flags, extra_status=0):
        """A file-backed vma_entry: its file entry, offset, open mode, kind."""
        e.shmid = file_id
        e.pgoff = m.offset
        mode = _link_open_mode(self.pid, m)
        if mode is not None:
            e.fdflags = mode
        if m.shared:
            e.status = V.VMA_AREA_REGULAR | V.VMA_FILE_SHARED | extra_status
            e.flags = V.MAP_SHARED | extra_flags
        else:
            e.status = V.VMA_AREA_REGULAR | V.VMA_FILE_PRIVATE | extra_status
            e.flags = V.MAP_PRIVATE | extra_flags
        return e


def fill_mm_entry(pid, vmas, exe_file_id, brk, dumpable, thp_disabled):
    s = proc.stat(pid)
    f = s.field
    return classes["mm_entry"](
        mm_start_code=int(f(26)), mm_end_code=int(f(27)), mm_start_data=int(f(45)),
        mm_end_data=int(f(46)), mm_start_stack=int(f(28)), mm_start_brk=int(f(47)),
        mm_brk=brk, mm_arg_start=int(f(48)), mm_arg_end=int(f(49)),
        mm_env_start=int(f(50)), mm_env_end=int(f(51)), exe_file_id=exe_file_id,
        mm_saved_auxv=proc.auxv(pid), vmas=vmas, dumpable=dumpable,
        thp_disabled=bool(thp_disabled), aios=aio.ring_entries(vmas))
