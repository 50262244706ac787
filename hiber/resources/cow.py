"""Private memory a parent and its children share copy-on-write.

After fork() a parent and child see the same physical pages in their
private anonymous mappings until one of them writes; the dump writes each
process's pages apart, so a restore that fills each process on its own
gives every child a private copy (more memory, and the sharing a program
may measure through /proc/PID/pagemap is gone).

The only way to make such sharing is fork(), so it is made before the
stubs fork (restore/fork.py): a stub "premaps" each private anonymous VMA
it shares with its parent or a child at a spare address (free in its own
layout and in every image's), filled with its pages, then forks its
children, which inherit the premaps. A child keeps the premaps of the VMAs
it has at the same range, writes only the pages whose contents differ from
its parent's and drops the pages it did not have; it unmaps the others.
Once the stub is taken over, its premaps move to their places with mremap,
which moves page tables, not pages: the sharing stays (memory.MemoryRestore).
"""

import bisect
import ctypes
import mmap
import os

from ..images import vma as V
from ..images.pagemap import PAGE_SIZE, PE_LAZY
from ..inject.remote import MAP_FIXED_NOREPLACE
from ..kernel import proc
from ..kernel.sys import syscall
from .memory import free_gap

# what a premapped area can stand for (shareable): private memory, anonymous
# or the written pages of a file; locked or hugetlb memory is created as
# before, unshared
SPECIAL = V.VMA_AREA_VDSO | V.VMA_AREA_VVAR | V.VMA_AREA_VSYSCALL | V.VMA_AREA_GUARD
COMPARE_BYTES = 1 << 20

# memcmp of two addresses: a prototype of our own, so that ctypes passes
# 64-bit pointers (and the shared libc handle of kernel/sys stays untouched)
_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]


def shareable(v):
    if not v.status & V.VMA_AREA_REGULAR or v.status & SPECIAL:
        return False
    flags = v.flags & ~(V.MAP_NORESERVE | V.MAP_GROWSDOWN)
    if v.status & V.VMA_ANON_PRIVATE:
        return flags == V.MAP_PRIVATE | V.MAP_ANONYMOUS
    # a private file mapping's written (COWed) pages; writable ones only, so
    # no code page that uprobes may have changed (resources/uprobes.py)
    return bool(v.status & V.VMA_FILE_PRIVATE and flags == V.MAP_PRIVATE
                and v.prot & V.PROT_WRITE)


def sharing_key(v):
    """What must match between a parent's VMA and a child's for the child
    to inherit its premap: the range, and the file and offset it maps."""
    if v.status & V.VMA_FILE_PRIVATE:
        return (v.start, v.end, v.shmid, v.pgoff)
    return (v.start, v.end)


def plan_sharing(plan):
    """For each live process, the (start, end) of the VMAs to premap: those
    its parent or one of its children has too, at the same range."""
    ranges = {}
    for p in plan.live:
        kept = _kept_runs(p)
        kept_ends = [r.end for r in kept]
        ranges[p.pid] = {sharing_key(v) for v in p.mm.vmas
                         if shareable(v) and not (kept and _holds(kept, kept_ends, v))}
    for p in plan.live:
        family = set()
        parent = ranges.get(p.pstree.ppid)
        if parent:
            family |= parent
        for child in p.children:
            family |= ranges.get(child.pid, set())
        p.share_ranges = ranges[p.pid] & family


def _kept_runs(p):
    """Runs whose pages a dump --lazy-pages kept back: they arrive only once
    the process runs (pages/lazy.py), too late to fill a premap its family
    shares, so the VMAs holding them are not shared (each process gets its
    own). Almost always none."""
    return [r for r in p.pagemap.runs if not r.present and r.flags & PE_LAZY]


def _holds(runs, ends, v):
    """Whether a run of ``runs`` (ascending, ``ends`` their ends) meets v."""
    i = bisect.bisect_right(ends, v.start)
    return i < len(runs) and runs[i].vaddr < v.end


def premap(plan, p, open_file):
    """In the stub of ``p``, before it forks: its premaps, the parent's
    reused where the ranges match. Sets p.premapped (start -> address).
    ``open_file(vma)`` gives an fd to map a file-backed VMA from."""
    parent = plan.by_pid.get(p.pstree.ppid)
    inherited = dict(parent.premapped) if parent is not None else {}
    if parent is not None:
        # the parent's premaps of ranges this process lacks are not its own
        for v in parent.mm.vmas:
            if v.start in inherited and sharing_key(v) not in p.share_ranges:
                syscall("munmap", inherited.pop(v.start), v.end - v.start)
    shared = [v for v in p.mm.vmas if sharing_key(v) in p.share_ranges]
    if not shared:
        return
    # the new premaps lie back to back in one stretch free in the stub's
    # layout and in every image's (so no mremap into place lands on another)
    occupied = [(m.start, m.end) for m in proc.maps("self")]
    occupied += [(v.start, v.end) for q in plan.live for v in q.mm.vmas]
    address = free_gap(occupied, sum(v.end - v.start for v in shared
                                     if v.start not in inherited))
    runs = [r for r in p.pagemap.runs if r.present]
    run_ends = [r.end for r in runs]
    pages = os.open(p.pages_path, os.O_RDONLY)
    try:
        for v in shared:
            mine = _runs_within(runs, run_ends, v.start, v.end)
            if v.start in inherited:
                _patch(inherited[v.start], v, mine, pages)
                p.premapped[v.start] = inherited[v.start]
            else:
                _new_premap(address, v, mine, pages, open_file)
                p.premapped[v.start] = address
                address += v.end - v.start
    finally:
        os.close(pages)


def _runs_within(runs, run_ends, start, end):
    """(address, size, file offset) of the dumped pages inside [start, end);
    ``runs`` ascending, ``run_ends`` their ends."""
    out = []
    for r in runs[bisect.bisect_right(run_ends, start):]:
        if r.vaddr >= end:
            break
        lo, hi = max(r.vaddr, start), min(r.end, end)
        out.append((lo, hi - lo, r.pages_offset + lo - r.vaddr))
    return out


def _new_premap(address, v, runs, pages, open_file):
    size = v.end - v.start
    flags = mmap.MAP_PRIVATE | MAP_FIXED_NOREPLACE | v.flags & V.MAP_GROWSDOWN
    fd, offset = -1, 0
    if v.status & V.VMA_FILE_PRIVATE:
        fd, offset = open_file(v), v.pgoff
    else:
        flags |= mmap.MAP_ANONYMOUS
    try:
        syscall("mmap", address, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, offset)
    except OSError as e:
        raise OSError(e.errno, f"cannot premap 0x{v.start:x}-0x{v.end:x} at "
                      f"0x{address:x}: {e.strerror}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    for vaddr, n, offset in runs:
        _read_exactly(pages, _view(address + vaddr - v.start, n), offset)


def _patch(address, v, runs, pages):
    """Turn the parent's premap into this process's memory: pages that
    differ are written (their sharing ends, as the child's own write ended
    it), pages this process did not have are dropped (anonymous memory then
    reads as zero, a private file mapping as the file again)."""
    buffer = bytearray(min(COMPARE_BYTES, v.end - v.start))
    scratch = (ctypes.c_char * len(buffer)).from_buffer(buffer)
    covered = v.start
    for vaddr, n, offset in runs:
        _drop(address, v.start, covered, vaddr)
        covered = vaddr + n
        done = 0
        while done < n:
            step = min(len(buffer), n - done)
            _read_exactly(pages, memoryview(buffer)[:step], offset + done)
            here = address + vaddr - v.start + done
            if _memcmp(here, ctypes.addressof(scratch), step):
                for page in range(0, step, PAGE_SIZE):
                    if _memcmp(here + page, ctypes.addressof(scratch) + page, PAGE_SIZE):
                        ctypes.memmove(here + page, ctypes.addressof(scratch) + page,
                                       PAGE_SIZE)
            done += step
    _drop(address, v.start, covered, v.end)


def _drop(address, vma_start, start, end):
    if end > start:
        syscall("madvise", address + start - vma_start, end - start, mmap.MADV_DONTNEED)


def _view(address, size):
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B")


def _read_exactly(fd, view, offset):
    while len(view):
        got = os.preadv(fd, [view], offset)
        if got <= 0:
            raise OSError(f"the pages file ended early at byte {offset}")
        view, offset = view[got:], offset + got
