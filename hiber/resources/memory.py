"""Memory: VMAs (mm-PID.img), private pages (pagemap-PID.img + pages-N.img).

Classification follows CRIU's parse_smaps/handle_vma (spec §3.1-3.3); the
pages taken follow mem.c (spec §1.8): present or swapped pages of private
VMAs, only the COWed ones of private file mappings, all of the vdso, never
vvar/vsyscall, never the shared zero page.
"""

import array
import logging
import mmap
import os
import stat as st

from ..errors import HiberError
from ..images import vma as V
from ..images.messages import classes
from ..images.pagemap import PAGE_SIZE, PE_LAZY, PE_PRESENT
from ..kernel import pagescan, proc
from ..kernel.sys import IOV_MAX, address_of, process_vm_readv, write_all
from . import mlock, shmem

log = logging.getLogger(__name__)

VmaEntry = classes["vma_entry"]

PM_PRESENT = 1 << 63
PM_SWAPPED = 1 << 62
PM_FILE = 1 << 61  # file page or shared anonymous page
PM_PFN_MASK = (1 << 55) - 1

# VmFlags two-letter codes (proc(5)) -> madvise advice number (spec §2.13)
MADV_BITS = {"rr": 1, "sr": 2, "dc": 10, "mg": 12, "hg": 14, "nh": 15, "dd": 16, "wf": 18}
# VmFlags -> mmap flags kept in vma_entry.flags
MAP_FLAG_BITS = {"gd": V.MAP_GROWSDOWN, "lo": V.MAP_LOCKED, "nr": V.MAP_NORESERVE,
                 "ht": V.MAP_HUGETLB}


class UnsupportedMapping(HiberError):
    pass


class UprobesFound(HiberError):
    def __init__(self, pid):
        self.pid = pid
        super().__init__(f"PID {pid} has a [uprobes] mapping: check which uprobes are "
                         "attached to it and re-run with --allow-uprobes")


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


def _link_open_mode(pid, m):
    """O_RDONLY/O_WRONLY/O_RDWR from the map_files link's mode (spec §2.13)."""
    try:
        mode = os.lstat(proc.map_file_path(pid, m.start, m.end)).st_mode
    except FileNotFoundError:
        return None
    readable, writable = mode & st.S_IRUSR, mode & st.S_IWUSR
    return 2 if readable and writable else 1 if writable else 0


class MemoryDump:
    """Collects the VMAs of one process and writes its pages."""

    def __init__(self, pid, files, allow_uprobes=False):
        self.pid = pid
        self.files = files              # resources.files.FileTable
        self.allow_uprobes = allow_uprobes
        self.vmas = []                  # vma_entry messages, image order
        self.had_uprobes = False
        self.pages_scanned = 0
        self.pages_written = 0
        self._scan_works = True

    # ---- VMAs ---------------------------------------------------------

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

    def recognise_vdso_proxy(self):
        """A process restored behind a vdso proxy carries a mark at the start
        of its runtime vdso (spec §4.4): the proxy is its vdso, its old vvar
        area its vvar, and the runtime vdso and vvar are dropped from the
        image, so that the next restore sees the process as it was."""
        from .vdso import ALL_ONES, MARK_SIZE, VdsoMark
        marked = []
        with open(f"/proc/{self.pid}/mem", "rb", buffering=0) as mem:
            for v in self.vmas:
                if (v.status & V.VMA_AREA_REGULAR and v.prot & 5 == 5 and v.end <= V.TASK_SIZE
                        and not v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED)
                        and not v.flags & V.MAP_GROWSDOWN):
                    try:
                        mem.seek(v.start)
                        mark = VdsoMark.parse(mem.read(MARK_SIZE))
                    except OSError:
                        continue
                    if mark:
                        marked.append((v, mark))
        if not marked:
            return None
        if len(marked) > 1:
            raise UnsupportedMapping(f"PID {self.pid}: two vdso marks, at 0x{marked[0][0].start:x}"
                                     f" and 0x{marked[1][0].start:x}")
        rt_vdso, mark = marked[0]
        by_start = {v.start: v for v in self.vmas}
        proxy = by_start.get(mark.orig_vdso)
        if proxy is None:
            raise UnsupportedMapping(f"PID {self.pid}: the vdso mark names 0x{mark.orig_vdso:x}, "
                                     "where nothing is mapped")
        proxy.status = V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE | V.VMA_AREA_VDSO
        if mark.orig_vvar != ALL_ONES and mark.orig_vvar in by_start:
            by_start[mark.orig_vvar].status = \
                V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE | V.VMA_AREA_VVAR
        dropped = {rt_vdso.start}
        rt_vvar = by_start.get(mark.rt_vvar)
        if rt_vvar is not None and rt_vvar.status & V.VMA_AREA_VVAR:
            dropped.add(rt_vvar.start)
        self.vmas = [v for v in self.vmas if v.start not in dropped]
        log.info("PID %d: vdso proxy at 0x%x recognised; dropped the runtime vdso at 0x%x",
                 self.pid, mark.orig_vdso, rt_vdso.start)
        return mark

    def _vma_entry(self, m):
        e = VmaEntry(start=m.start, end=m.end, pgoff=0, shmid=0, prot=m.prot, flags=0,
                     status=0, fd=-1)
        madv = sum(1 << bit for code, bit in MADV_BITS.items() if code in m.vmflags)
        if madv:
            e.madv = madv
        mlock.dump_vma(m.vmflags, e)
        extra_flags = sum(bit for code, bit in MAP_FLAG_BITS.items() if code in m.vmflags)
        special = m.path if m.path.startswith("[") and m.inode == 0 else None

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
        if m.path.startswith("anon_inode:") or m.path.startswith("/[aio]"):
            # io_uring rings, perf buffers, AIO rings, DRM objects ...
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} is "
                                     f"a {m.path.split(' ')[0]} mapping, which hiber cannot "
                                     "dump yet")
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
        e.flags = V.MAP_PRIVATE | V.MAP_ANONYMOUS | extra_flags
        return e

    def _file_vma(self, e, m, extra_flags, io_mapping):
        link = proc.map_file_path(self.pid, m.start, m.end)
        if shmem.is_shmem_path(m.path):
            return self._shmem_vma(e, m, link, extra_flags)
        if m.path.startswith("/SYSV"):
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} is SysV "
                                     "shared memory, which needs the IPC namespace dumped; "
                                     "not supported yet")
        if m.path.endswith(" (deleted)"):
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} maps the "
                                     f"deleted file {m.path[:-10]}; hiber cannot dump deleted "
                                     "files yet")
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
        return self._backed_by(e, m, self.files.mapped_file(m.path, info), extra_flags)

    def _shmem_vma(self, e, m, link, extra_flags):
        """Shared anonymous memory or a memfd: the memfd path (spec §3.2)."""
        if "ht" in m.vmflags:
            raise UnsupportedMapping(f"PID {self.pid}: mapping {m.start:x}-{m.end:x} is "
                                     "hugetlb shared memory, not supported yet")
        # a private mapping's COWed pages go to the task's pagemap as for any
        # private file
        return self._backed_by(e, m, self.files.shmem.mapping(m.path, link), extra_flags,
                               V.VMA_AREA_MEMFD)

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

    # ---- pages ----------------------------------------------------------

    def collect_guards(self):
        """MADV_GUARD_INSTALL ranges as pseudo-VMAs, appended after the real
        ones (spec §3.3). Kernels without PAGE_IS_GUARD have none to find."""
        fd = os.open(f"/proc/{self.pid}/pagemap", os.O_RDONLY)
        try:
            for start, end, _ in pagescan.scan(fd, 0, V.TASK_SIZE,
                                               required=pagescan.PAGE_IS_GUARD,
                                               report=pagescan.PAGE_IS_GUARD):
                self.vmas.append(VmaEntry(start=start, end=end, pgoff=0, shmid=0, prot=0,
                                          flags=0, status=V.VMA_AREA_GUARD, fd=-1))
        except pagescan.ScanUnsupported:
            log.debug("PAGEMAP_SCAN cannot report guard regions here")
        finally:
            os.close(fd)

    def page_runs(self, zero_pfn):
        """Yield (vaddr, nr_pages, flags) of the pages to dump, ascending."""
        with open(f"/proc/{self.pid}/pagemap", "rb", buffering=0) as pagemap:
            for v in self.vmas:
                if not V.is_private(v) or v.status & (V.VMA_AREA_VVAR | V.VMA_AREA_GUARD):
                    continue
                if v.flags & V.MAP_DROPPABLE:
                    continue
                npages = (v.end - v.start) // PAGE_SIZE
                self.pages_scanned += npages
                lazy = (v.flags & V.MAP_ANONYMOUS
                        and not v.flags & (V.MAP_LOCKED | V.MAP_HUGETLB)
                        and not v.status & (V.VMA_AREA_VDSO | V.VMA_AREA_VSYSCALL))
                flags = PE_PRESENT | (PE_LAZY if lazy else 0)
                if v.status & V.VMA_AREA_VDSO:
                    # the vdso is taken whole, whatever its pages' state (spec §1.8)
                    yield v.start, npages, flags
                    continue
                for start, count in self._taken_pages(pagemap, v, zero_pfn):
                    yield start, count, flags

    def _taken_pages(self, pagemap, v, zero_pfn):
        """Runs (start, nr_pages) of pages present or swapped, not the zero
        page, not a guard marker, and for private file mappings only the
        COWed (anonymous) ones."""
        forbidden = pagescan.PAGE_IS_PFNZERO | pagescan.PAGE_IS_GUARD
        if v.status & V.VMA_FILE_PRIVATE:
            forbidden |= pagescan.PAGE_IS_FILE
        if self._scan_works:
            try:
                runs = list(pagescan.scan(
                    pagemap.fileno(), v.start, v.end, forbidden=forbidden,
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

    def write_pages(self, writer, runs, buffer, progress=None):
        """Copy the pages of ``runs`` (from page_runs) into the pages file
        through ``buffer`` (a writable mapping); progress(n) after each batch."""
        batch = []          # (vaddr, nr_pages, flags)
        batch_bytes = 0
        mem = open(f"/proc/{self.pid}/mem", "rb", buffering=0)
        try:
            for vaddr, nr_pages, flags in runs:
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
        write_all(writer.pages_file.fileno(), memoryview(buffer)[:total])
        for vaddr, n, flags in batch:
            writer.add(vaddr, n, flags)
        self.pages_written += total // PAGE_SIZE
        if progress:
            progress(total // PAGE_SIZE)


def fill_mm_entry(pid, vmas, exe_file_id, brk, dumpable, thp_disabled):
    s = proc.stat(pid)
    f = s.field
    return classes["mm_entry"](
        mm_start_code=int(f(26)), mm_end_code=int(f(27)), mm_start_data=int(f(45)),
        mm_end_data=int(f(46)), mm_start_stack=int(f(28)), mm_start_brk=int(f(47)),
        mm_brk=brk, mm_arg_start=int(f(48)), mm_arg_end=int(f(49)),
        mm_env_start=int(f(50)), mm_env_end=int(f(51)), exe_file_id=exe_file_id,
        mm_saved_auxv=proc.auxv(pid), vmas=vmas, dumpable=dumpable,
        thp_disabled=bool(thp_disabled))


# ---- restore half: build the image's address space inside a stub ----------

MAP_FIXED = 0x10
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


class MemoryRestore:
    """Creates every VMA of the image at its address and fills its pages,
    through syscalls injected into the stub (``remote``).

    ``mapping_fd(vma)`` names the fd, inside the task, to map a file-backed
    VMA from; ``pages_fd`` is the task's fd of this process's pages file.
    """

    def __init__(self, remote, vmas, pagemap, pages_fd, mapping_fd, scratch, scratch_size):
        self.remote = remote
        self.vmas = [v for v in vmas if not v.status & NOT_RESTORED]
        self.guards = [v for v in vmas if v.status & V.VMA_AREA_GUARD
                       and not v.status & V.VMA_AREA_REGULAR]
        # the vdso's dumped pages are not written back: the kernel's own vdso
        # is moved there instead (or, on another kernel, they become the proxy)
        skipped = [(v.start, v.end) for v in vmas if v.status & NOT_RESTORED]
        self.runs = [r for r in pagemap.runs if r.present
                     and not any(s <= r.vaddr < e for s, e in skipped)]
        self.pages_fd = pages_fd
        self.mapping_fd = mapping_fd
        self.scratch = scratch
        self.scratch_size = scratch_size
        self.pages_restored = 0
        self._filled = self._vmas_with_pages()

    def _vmas_with_pages(self):
        """Starts of the VMAs that get pages: they are mapped writable first."""
        starts = []
        i = 0
        for v in self.vmas:
            while i < len(self.runs) and self.runs[i].end <= v.start:
                i += 1
            if i < len(self.runs) and self.runs[i].vaddr < v.end:
                starts.append(v.start)
        return set(starts)

    def unmap_stub(self, keep):
        """Unmap all the stub has, except the ranges in ``keep``."""
        for m in proc.maps(self.remote.pid):
            if m.path == "[vsyscall]" or any(s <= m.start and m.end <= e for s, e in keep):
                continue
            self.remote.syscall("munmap", m.start, m.end - m.start)

    def create_vmas(self):
        for v in self.vmas:
            prot = v.prot | (V.PROT_WRITE if v.start in self._filled else 0)
            flags = mlock.mmap_flags(v) | MAP_FIXED
            if v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED):
                fd, offset = self.mapping_fd(v), v.pgoff
            else:
                fd, offset = -1, 0
                flags |= V.MAP_ANONYMOUS
            got = self.remote.syscall("mmap", v.start, v.end - v.start, prot, flags, fd, offset)
            if got != v.start:
                raise HiberError(f"PID {self.remote.pid}: mapping 0x{v.start:x} landed at "
                                 f"0x{got:x}")

    def fill_pages(self, progress=None):
        """preadv from the pages file straight into the task's memory: the
        present runs lie back to back in the file, so one call fills up to
        IOV_MAX runs with one copy."""
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
        mlock.restore_vmas(self.remote, self.vmas)
