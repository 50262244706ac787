"""Memory: the address space of a process, both halves.

Dump: vmas.py classifies the VMAs (mm-PID.img), pages.py selects and
writes the pages (pagemap-PID.img + pages-N.img), vdso.py recognises a
vdso proxy; shared memory objects are files/memfd.py's.

Restore (here): every VMA of the image is created at its address in the
stub by injected mmap calls, and its pages are read straight from the
pages file into the task by injected preadv calls.
"""

from ..errors import HiberError
from ..images import vma as V
from ..images.pagemap import PAGE_SIZE, PE_LAZY, PageRun
from ..kernel import proc, sysv  # noqa: F401 - sysv: the shmat syscall's number
from ..kernel.sys import IOV_MAX
from . import mlock, uprobes, vmanames

# ---- restore half: build the image's address space inside a stub ----------

MAP_FIXED = 0x10
SHM_RDONLY, SHM_EXEC = 0o10000, 0o100000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MADV_GUARD_INSTALL = 102
MADV_POPULATE_WRITE = 23
POPULATE_MIN_BYTES = 64 << 10
MAX_IOV_BYTES = 1 << 30  # preadv moves at most ~2 GiB a call: stay well below
NOT_RESTORED = V.VMA_AREA_VDSO | V.VMA_AREA_VVAR | V.VMA_AREA_VSYSCALL | V.VMA_AREA_GUARD


def page_align_up(n):
    return (n + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


def free_gap(occupied, size, floor=0x100000):
    """Lowest address >= floor with ``size`` bytes free of every (start, end)."""
    address = floor
    for start, end in sorted(occupied):
        if end <= address:
            continue
        if start >= address + size:
            break
        address = page_align_up(end)
    return address


def _outside(runs, ranges):
    """The parts of the page runs outside the (start, end) ranges (a dump
    may write one run across two adjacent VMAs). Both ascending: one walk."""
    first = 0  # the first range that may still meet a run
    for r in runs:
        vaddr, end = r.vaddr, r.end
        while first < len(ranges) and ranges[first][1] <= vaddr:
            first += 1
        i = first
        while i < len(ranges) and ranges[i][0] < end:
            start, stop = ranges[i]
            if start > vaddr:
                yield _piece(r, vaddr, start)
            vaddr = max(vaddr, stop)
            i += 1
        if vaddr == r.vaddr:
            yield r  # untouched: the common case, most processes premap nothing
        elif vaddr < end:
            yield _piece(r, vaddr, end)


def _piece(run, start, end):
    return PageRun(start, (end - start) // PAGE_SIZE, run.flags,
                   run.pages_offset + start - run.vaddr)


class MemoryRestore:
    """Creates every VMA of the image at its address and fills its pages,
    through syscalls injected into the stub (``remote``).

    ``mapping_fd(vma)`` names the fd, inside the task, to map a file-backed
    VMA from; ``pages_fd`` is the task's fd of this process's pages file.
    """

    def __init__(self, remote, vmas, pagemap, pages_fd, mapping_fd, scratch, scratch_size,
                 premapped=None, lazy=False):
        self.remote = remote
        self.vmas = [v for v in vmas if not v.status & NOT_RESTORED]
        # start -> address of the VMA's premap, made and filled before the
        # stub forked, shared copy-on-write with its family (resources/cow.py)
        self.premapped = premapped or {}
        self.guards = [v for v in vmas if v.status & V.VMA_AREA_GUARD
                       and not v.status & V.VMA_AREA_REGULAR]
        # the vdso's dumped pages are not written back: the kernel's own vdso
        # is moved there instead (or, on another kernel, they become the proxy)
        skipped = [(v.start, v.end) for v in vmas if v.status & NOT_RESTORED]
        runs = [r for r in pagemap.runs if r.present
                and not any(s <= r.vaddr < e for s, e in skipped)]
        premapped = sorted((v.start, v.end) for v in self.vmas if v.start in self.premapped)
        all_pages = sum(r.nr_pages for r in runs)
        runs = list(_outside(runs, premapped))
        # the premaps' pages are in place already
        self.pages_restored = all_pages - sum(r.nr_pages for r in runs)
        # pages of code that uprobes may have changed take their own path
        # (resources/uprobes.py); the rest are preadv'd into writable VMAs
        self.runs, self.code_runs = uprobes.split_code_runs(runs, self.vmas)
        # a lazy restore leaves PE_LAZY pages to the lazy-pages daemon
        # (pages/lazy.py), which brings them in on fault
        self.lazy_runs = [r for r in self.runs if lazy and r.flags & PE_LAZY]
        if self.lazy_runs:
            self.runs = [r for r in self.runs if not r.flags & PE_LAZY]
        # pages a dump --lazy-pages kept back: only a lazy restore gets them
        kept = list(_outside([r for r in pagemap.runs if not r.present and r.flags & PE_LAZY
                              and not any(s <= r.vaddr < e for s, e in skipped)], premapped))
        if lazy:  # (plan.py refuses such images to a restore that is not lazy)
            self.lazy_runs = sorted(self.lazy_runs + kept, key=lambda r: r.vaddr)
        self.pages_fd = pages_fd
        self.mapping_fd = mapping_fd
        self.scratch = scratch
        self.scratch_size = scratch_size
        self._filled = self._vmas_with_pages() | set(self.premapped)

    def _vmas_with_pages(self):
        """Starts of the VMAs that get pages: they are mapped writable first.
        Code VMAs never are: the kernel arms uprobes only in a file mapping
        created non-writable (resources/uprobes.py)."""
        starts = []
        i = 0
        for v in self.vmas:
            while i < len(self.runs) and self.runs[i].end <= v.start:
                i += 1
            if i < len(self.runs) and self.runs[i].vaddr < v.end:
                starts.append(v.start)
        return set(starts)

    def unmap_stub(self, keep):
        """Unmap all the stub has, except the ranges in ``keep``: one munmap
        per stretch between kept ranges, as munmap takes ranges with holes
        and several mappings alike (a Python stub has a hundred)."""
        mappings = [m for m in proc.maps(self.remote.pid) if m.path != "[vsyscall]"]
        kept = sorted(keep)
        start = 0
        for kept_start, kept_end in kept + [(None, None)]:
            end = kept_start if kept_start is not None else max(m.end for m in mappings)
            if end > start and any(m.start < end and m.end > start for m in mappings):
                self.remote.syscall("munmap", start, end - start)
            if kept_end is None:
                break
            start = max(start, kept_end)

    def create_vmas(self):
        for v in self.vmas:
            if v.start in self.premapped:
                # mremap moves page tables, not pages: the sharing stays
                size = v.end - v.start
                self.remote.syscall("mremap", self.premapped[v.start], size, size,
                                    MREMAP_MAYMOVE | MREMAP_FIXED, v.start)
                continue
            if v.status & V.VMA_AREA_SYSVIPC:
                self._attach_segment(v)
                continue
            prot = v.prot | (V.PROT_WRITE if v.start in self._filled else 0)
            flags = mlock.mmap_flags(v) | MAP_FIXED
            if v.status & V.VMA_AREA_AIORING:
                # a private copy of the ring, until aio.py moves a live one over it
                flags = V.MAP_PRIVATE | V.MAP_ANONYMOUS | MAP_FIXED
            if v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED):
                fd, offset = self.mapping_fd(v), v.pgoff
            else:
                fd, offset = -1, 0
                flags |= V.MAP_ANONYMOUS
            got = self.remote.syscall("mmap", v.start, v.end - v.start, prot, flags, fd, offset)
            if got != v.start:
                raise HiberError(f"PID {self.remote.pid}: mapping 0x{v.start:x} landed at "
                                 f"0x{got:x}")

    def _attach_segment(self, v):
        """SysV shared memory: attached again by its id, in the IPC namespace
        the stub was born in; its contents are the segment's."""
        flags = (0 if v.prot & V.PROT_WRITE else SHM_RDONLY) | \
            (SHM_EXEC if v.prot & V.PROT_EXEC else 0)
        try:
            got = self.remote.syscall("shmat", v.shmid, v.start, flags)
        except OSError as e:
            raise HiberError(f"PID {self.remote.pid}: cannot attach SysV shared memory "
                             f"segment {v.shmid} at 0x{v.start:x}: {e.strerror}") from None
        if got != v.start:
            raise HiberError(f"PID {self.remote.pid}: SysV segment {v.shmid} attached at "
                             f"0x{got:x}, not 0x{v.start:x}")

    def fill_pages(self, progress=None):
        """preadv from the pages file straight into the task's memory: the
        present runs lie back to back in the file, so one call fills up to
        IOV_MAX runs with one copy. Then the pages of code VMAs, which are
        mapped read-only already."""
        iov_capacity = min(IOV_MAX, self.scratch_size // 16)
        i = 0
        while i < len(self.runs):
            batch, total = [], 0
            offset = self.runs[i].pages_offset
            while (i < len(self.runs) and len(batch) < iov_capacity
                   and self.runs[i].pages_offset == offset + total  # back to back in the file
                   and (not batch or total + self.runs[i].size <= MAX_IOV_BYTES)):
                batch.append([self.runs[i].vaddr, self.runs[i].size])
                total += self.runs[i].size
                i += 1
            for address, size in batch:
                if size >= POPULATE_MIN_BYTES:
                    # fault large destinations in at once: the 1 GiB restore
                    # goes from ~0.56-1.0 s to ~0.52 s here; a small run is
                    # not worth the extra injected call (~20 us)
                    self.remote.syscall_raw("madvise", address, size, MADV_POPULATE_WRITE)
            while batch:
                self.remote.write(self.scratch, b"".join(
                    a.to_bytes(8, "little") + n.to_bytes(8, "little") for a, n in batch))
                done = self.remote.syscall("preadv", self.pages_fd, self.scratch, len(batch),
                                           offset, 0)
                if done <= 0:
                    raise HiberError(f"PID {self.remote.pid}: the pages file ended early")
                offset += done
                self.pages_restored += done // PAGE_SIZE
                if progress:
                    progress(done // PAGE_SIZE)
                while batch and done >= batch[0][1]:  # drop what was filled
                    done -= batch.pop(0)[1]
                if batch and done:
                    batch[0][0] += done
                    batch[0][1] -= done
        uprobes.restore_code_pages(self.remote.pid, self.code_runs, self.pages_fd,
                                   self.mapping_fd, progress)
        self.pages_restored += sum(r.nr_pages for r, _ in self.code_runs)

    def finish(self):
        """Final protections, madvise flags, guard regions, then locks and seals."""
        for v in self.vmas:
            if v.start in self._filled and not v.prot & V.PROT_WRITE:
                self.remote.syscall("mprotect", v.start, v.end - v.start, v.prot)
            for advice in range(64):
                if v.madv & (1 << advice):
                    self.remote.syscall("madvise", v.start, v.end - v.start, advice)
        for g in self.guards:
            self.remote.syscall("madvise", g.start, g.end - g.start, MADV_GUARD_INSTALL)
        vmanames.restore_names(self.remote, self.vmas, self.scratch)
        mlock.restore_vmas(self.remote, self.vmas)
