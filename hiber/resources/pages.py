"""The pages of a process: pagemap-PID.img + pages-N.img (spec §1.8).

Which pages are taken follows CRIU's mem.c: present or swapped pages of
private VMAs, only the COWed ones of private file mappings, all of the
vdso, never vvar/vsyscall/guard regions, never the shared zero page. They
are found with PAGEMAP_SCAN where the kernel has it (one ioctl per VMA),
else from the raw /proc/PID/pagemap words; then copied out with
process_vm_readv in batches through one buffer, straight into the pages
file.
"""

import array
import logging
import mmap
import os

from ..errors import HiberError
from ..images import vma as V
from ..images.pagemap import PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT
from ..kernel import pagescan
from . import dirty
from ..kernel.sys import IOV_MAX, address_of, process_vm_readv

log = logging.getLogger(__name__)

# /proc/PID/pagemap words (Documentation/admin-guide/mm/pagemap.rst)
PM_PRESENT = 1 << 63
PM_SWAPPED = 1 << 62
PM_FILE = 1 << 61  # file page or shared anonymous page
PM_PFN_MASK = (1 << 55) - 1


def zero_page_pfn():
    """PFN of the kernel's shared zero page: reading untouched anonymous
    memory maps it; CRIU never dumps such pages."""
    page = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        _ = page[0]  # a read fault maps the zero page
        address = address_of(page)
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(address // PAGE_SIZE * 8)
            entry = int.from_bytes(f.read(8), "little")
        return entry & PM_PFN_MASK if entry & PM_PRESENT else None
    finally:
        page.close()



class ProcessPages:
    """Selects the pages of one process's VMAs and writes them."""

    def __init__(self, pid, vmas, parent=None):
        self.pid = pid
        self.vmas = vmas                # vma_entry messages (vmas.py)
        # dirty.ParentPages when an earlier dump's images hold pages of this
        # process and its writes since are tracked: unwritten pages are left
        # to that parent (PE_PARENT entries, no data)
        self.parent = parent
        self.pages_scanned = 0
        self.pages_written = 0
        self.pages_in_parent = 0
        self.pages_lazy = 0             # kept back by a dump --lazy-pages
        self._scan_works = True

    # ---- which pages ----------------------------------------------------

    def page_runs(self, zero_pfn):
        """Yield (vaddr, nr_pages, flags) of the pages to dump, ascending."""
        with open(f"/proc/{self.pid}/pagemap", "rb", buffering=0) as pagemap:
            for v in self.vmas:
                if not V.is_private(v) or v.status & (V.VMA_AREA_VVAR | V.VMA_AREA_GUARD):
                    continue
                if v.flags & V.MAP_DROPPABLE:
                    # the kernel may zero these pages at any time (mm: add
                    # MAP_DROPPABLE); their users (vgetrandom state) expect
                    # that and reseed, and a copy restored twice must not
                    # hand out the same random bytes
                    continue
                npages = (v.end - v.start) // PAGE_SIZE
                self.pages_scanned += npages
                lazy = (v.flags & V.MAP_ANONYMOUS
                        and not v.flags & (V.MAP_LOCKED | V.MAP_HUGETLB)
                        and not v.status & (V.VMA_AREA_VDSO | V.VMA_AREA_VSYSCALL
                                            | V.VMA_AREA_AIORING))
                flags = PE_PRESENT | (PE_LAZY if lazy else 0)
                if v.status & (V.VMA_AREA_VDSO | V.VMA_AREA_AIORING):
                    # the vdso and AIO rings are taken whole, whatever their
                    # pages' state (spec §1.8; the kernel writes a ring)
                    yield v.start, npages, flags
                    continue
                if self.parent is not None and dirty.trackable(v) and self._scan_works:
                    yield from self._runs_against_parent(pagemap, v, zero_pfn, flags)
                    continue
                for start, count in self._taken_pages(pagemap, v, zero_pfn):
                    yield start, count, flags

    def _runs_against_parent(self, pagemap, v, zero_pfn, flags):
        """The taken pages of a tracked VMA, those unwritten since the parent
        dump (and held by its images) as PE_PARENT runs without data."""
        try:
            runs = list(pagescan.scan(
                pagemap.fileno(), v.start, v.end, forbidden=self._forbidden(v),
                anyof=pagescan.PAGE_IS_PRESENT | pagescan.PAGE_IS_SWAPPED,
                report=(pagescan.PAGE_IS_PRESENT | pagescan.PAGE_IS_SWAPPED
                        | pagescan.PAGE_IS_WRITTEN)))
        except pagescan.ScanUnsupported:
            self._scan_works = False
            for start, count in self._taken_pages(pagemap, v, zero_pfn):
                yield start, count, flags
            return
        written = [(start, end, bool(cats & pagescan.PAGE_IS_WRITTEN))
                   for start, end, cats in runs]
        for start, count, in_parent in dirty.split_by_parent(written, self.parent):
            if in_parent:
                self.pages_in_parent += count
                yield start, count, PE_PARENT
            else:
                yield start, count, flags

    @staticmethod
    def _forbidden(v):
        forbidden = pagescan.PAGE_IS_PFNZERO | pagescan.PAGE_IS_GUARD
        if v.status & V.VMA_FILE_PRIVATE:
            forbidden |= pagescan.PAGE_IS_FILE
        return forbidden

    def _taken_pages(self, pagemap, v, zero_pfn):
        """Runs (start, nr_pages) of pages present or swapped, not the zero
        page, not a guard marker, and for private file mappings only the
        COWed (anonymous) ones."""
        if self._scan_works:
            try:
                runs = list(pagescan.scan(
                    pagemap.fileno(), v.start, v.end, forbidden=self._forbidden(v),
                    anyof=pagescan.PAGE_IS_PRESENT | pagescan.PAGE_IS_SWAPPED))
                return [(start, (end - start) // PAGE_SIZE) for start, end, _ in runs]
            except pagescan.ScanUnsupported:
                self._scan_works = False
        return list(self._taken_pages_slowly(pagemap, v, zero_pfn))

    @staticmethod
    def _taken_pages_slowly(pagemap, v, zero_pfn):
        """The same selection from the raw pagemap words, for kernels
        without PAGEMAP_SCAN."""
        npages = (v.end - v.start) // PAGE_SIZE
        pagemap.seek(v.start // PAGE_SIZE * 8)
        words = array.array("Q")
        words.frombytes(pagemap.read(npages * 8))
        file_backed = bool(v.status & V.VMA_FILE_PRIVATE)
        run_start = None
        for i, w in enumerate(words):
            take = False
            if w & PM_PRESENT:
                if not (file_backed and w & PM_FILE):
                    take = zero_pfn is None or (w & PM_PFN_MASK) != zero_pfn
            elif w & PM_SWAPPED:
                take = True
            if take:
                if run_start is None:
                    run_start = i
            elif run_start is not None:
                yield v.start + run_start * PAGE_SIZE, i - run_start
                run_start = None
        if run_start is not None:
            yield v.start + run_start * PAGE_SIZE, npages - run_start


    # ---- copying them -----------------------------------------------------

    def write_pages(self, writer, runs, buffer, progress=None):
        """Copy the pages of ``runs`` (from page_runs) into the pages file
        through ``buffer`` (a writable mapping); progress(n) after each batch."""
        batch = []          # (vaddr, nr_pages, flags)
        batch_bytes = 0
        mem = open(f"/proc/{self.pid}/mem", "rb", buffering=0)
        try:
            for vaddr, nr_pages, flags in runs:
                if not flags & PE_PRESENT:
                    # in the parent: an entry, no data (the pagemap stays in
                    # address order, so what is batched goes first)
                    self._flush(batch, writer, buffer, mem, progress)
                    batch, batch_bytes = [], 0
                    writer.add(vaddr, nr_pages, flags)
                    continue
                # split runs larger than the buffer
                while nr_pages:
                    take = min(nr_pages, (len(buffer) - batch_bytes) // PAGE_SIZE)
                    if take == 0 or len(batch) == IOV_MAX:
                        self._flush(batch, writer, buffer, mem, progress)
                        batch, batch_bytes = [], 0
                        continue
                    batch.append((vaddr, take, flags))
                    batch_bytes += take * PAGE_SIZE
                    vaddr += take * PAGE_SIZE
                    nr_pages -= take
            self._flush(batch, writer, buffer, mem, progress)
        finally:
            mem.close()

    def _flush(self, batch, writer, buffer, mem, progress):
        if not batch:
            return
        base = address_of(buffer)
        total = sum(n for _, n, _ in batch) * PAGE_SIZE
        local, remote, offset = [], [], 0
        for vaddr, n, _ in batch:
            local.append((base + offset, n * PAGE_SIZE))
            remote.append((vaddr, n * PAGE_SIZE))
            offset += n * PAGE_SIZE
        try:
            done = process_vm_readv(self.pid, local, remote)
        except OSError:
            done = 0
        if done < total:
            # PROT_NONE and other pages process_vm_readv refuses: /proc/PID/mem
            # reads them (kernel-facts); continue from where the fast path stopped
            view = memoryview(buffer)
            offset = 0
            for vaddr, n, _ in batch:
                size = n * PAGE_SIZE
                if offset + size > done:
                    skip = max(0, done - offset)
                    got = os.preadv(mem.fileno(), [view[offset + skip:offset + size]],
                                    vaddr + skip)
                    if got != size - skip:
                        raise HiberError(f"PID {self.pid}: cannot read memory at "
                                         f"0x{vaddr + skip:x}")
                offset += size
        view, offset = memoryview(buffer), 0
        for vaddr, n, flags in batch:
            # the writer puts the data where its entry says (a local pages
            # file, or a page server's connection)
            writer.add(vaddr, n, flags, view[offset:offset + n * PAGE_SIZE])
            offset += n * PAGE_SIZE
        self.pages_written += total // PAGE_SIZE
        if progress:
            progress(total // PAGE_SIZE)

