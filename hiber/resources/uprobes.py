"""Code pages that uprobes may have changed: their restore half.

What the kernel does with uprobes (kernel/events/uprobes.c, and
docs/uprobes-and-vdso.md for the user's side):

* A probe is armed in an address space only when a file mapping is created
  (uprobe_mmap, from mmap) or when the probe is registered while the mapping
  exists (register_for_each_vma). Both ask valid_vma(vma, is_register=true):
  a file mapping that may be executable and is neither writable nor shared.
  Arming (install_breakpoint) writes int3 into a private copy of the page and
  sets MMF_HAS_UPROBES on the mm; mprotect() of an existing mapping arms
  nothing.
* An int3 trap is offered to uprobes (uprobe_pre_sstep_notifier) only in an
  mm with MMF_HAS_UPROBES; handle_swbp() then looks for a registered probe at
  the trap's (file, offset). With no probe there, or in an mm never marked,
  the int3 is a plain SIGTRAP: the probed int3 bytes of a dump, written back
  into a mapping the kernel never armed, kill the restored process.

So a restored process gets its executable, non-writable private file
mappings created as they finally are, never writable first: the kernel arms
in them the probes that are active now, for this process, exactly as it
would for a program just started. Each dumped page of such a mapping is then
compared with the file and with what the kernel made of it:

* identical to what the kernel shows: nothing to write (no copy of the page);
* differing from the file only by int3 bytes: those are uprobes' breakpoints,
  which are the kernel's business, not the program's state. The page is left
  as the kernel made it: probes active now are armed there, probes gone since
  the dump are gone from the code too (their int3 would be a SIGTRAP);
* any other change is the program's own (relocations, a JIT writing into a
  private file mapping, self-patching): the dumped page is written back
  whole, through /proc/PID/mem as the kernel's own breakpoints are (a private
  copy of a read-only page), with the probes armed now kept armed.

The program's own int3 instructions are in its file, so they never count as
a change and always come back. The one case this cannot tell apart: an int3
that the program itself wrote at run time into a code page it changed in no
other way looks exactly like a uprobe's; it is dropped, with a warning naming
its address in the log.

Nothing else runs meanwhile: the restored process is one stopped stub
thread while its memory is built; its other threads are created after.
"""

import bisect
import dataclasses
import logging
import os

from ..errors import HiberError
from ..images import vma as V
from ..images.pagemap import PAGE_SIZE

log = logging.getLogger(__name__)

INT3 = 0xCC  # x86's UPROBE_SWBP_INSN


def takes_breakpoints(v):
    """Whether the kernel arms uprobes in this VMA when it is mapped and its
    code can run into them: an executable, non-writable private file mapping
    (valid_vma; a non-executable one is armed too, but never executes the
    int3, so its pages are plain data)."""
    return bool(v.status & V.VMA_FILE_PRIVATE and v.prot & V.PROT_EXEC
                and not v.prot & V.PROT_WRITE and not v.flags & V.MAP_HUGETLB)


def _piece(run, start, end):
    return dataclasses.replace(run, vaddr=start, nr_pages=(end - start) // PAGE_SIZE,
                               pages_offset=run.pages_offset + (start - run.vaddr))


def split_code_runs(runs, vmas):
    """(other runs, [(run, vma)] in code VMAs): a pagemap run may span
    several VMAs (CRIU merges adjacent pages), so it is cut at their edges."""
    code = sorted((v for v in vmas if takes_breakpoints(v)), key=lambda v: v.start)
    ends = [v.end for v in code]
    rest, pieces = [], []
    for r in runs:
        start = r.vaddr
        i = bisect.bisect_right(ends, r.vaddr)
        while i < len(code) and code[i].start < r.end:
            lo, hi = max(code[i].start, r.vaddr), min(code[i].end, r.end)
            if start < lo:
                rest.append(_piece(r, start, lo))
            pieces.append((_piece(r, lo, hi), code[i]))
            start = hi
            i += 1
        if start == r.vaddr:
            rest.append(r)
        elif start < r.end:
            rest.append(_piece(r, start, r.end))
    return rest, pieces


def _differences(a, b, step=64):
    """Offsets at which the equal-length a and b differ, in order."""
    for chunk in range(0, len(a), step):
        if a[chunk:chunk + step] != b[chunk:chunk + step]:
            for i in range(chunk, min(chunk + step, len(a))):
                if a[i] != b[i]:
                    yield i


def _breakpoints_only(dumped, original):
    """Offsets where the dumped page differs from the file when every one of
    them holds int3; None when the program changed something else."""
    offsets = []
    for i in _differences(dumped, original):
        if dumped[i] != INT3:
            return None
        offsets.append(i)
    return offsets


def restored_code_page(dumped, original, live):
    """What to write into one code page, or None to leave the kernel's page;
    and the offsets of dumped breakpoints that no probe arms now.

    ``original`` is the file's page, ``live`` the freshly mapped page: the
    file's with the int3 of every probe armed now."""
    if dumped == live:
        return None, []
    breakpoints = _breakpoints_only(dumped, original)
    if breakpoints is not None:
        return None, [i for i in breakpoints if live[i] != INT3]
    if live == original:
        return dumped, []
    page = bytearray(dumped)
    for i in _differences(live, original):
        page[i] = live[i]  # a probe armed now stays armed, as registering it would do
    return bytes(page), []


def restore_code_pages(pid, pieces, pages_fd, mapping_fd, progress=None):
    """Bring back the dumped pages of code VMAs (from split_code_runs), the
    VMAs being mapped already as they finally are. ``pages_fd`` and
    ``mapping_fd(vma)`` are fds inside the stopped task ``pid``."""
    if not pieces:
        return
    files = {}
    pages = os.open(f"/proc/{pid}/fd/{pages_fd}", os.O_RDONLY)
    mem = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    try:
        for run, v in pieces:
            fd = mapping_fd(v)
            if fd not in files:
                files[fd] = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY)
            dumped = os.pread(pages, run.size, run.pages_offset)
            if len(dumped) != run.size:
                raise HiberError(f"PID {pid}: the pages file ended early, at the pages "
                                 f"of 0x{run.vaddr:x}")
            # past the end of the file a mapping shows zeros
            original = os.pread(files[fd], run.size,
                                v.pgoff + run.vaddr - v.start).ljust(run.size, b"\0")
            live = os.pread(mem, run.size, run.vaddr)
            for at in range(0, run.size, PAGE_SIZE):
                page, dropped = restored_code_page(dumped[at:at + PAGE_SIZE],
                                                   original[at:at + PAGE_SIZE],
                                                   live[at:at + PAGE_SIZE])
                address = run.vaddr + at
                if page is not None and os.pwrite(mem, page, address) != PAGE_SIZE:
                    raise HiberError(f"PID {pid}: cannot write the code page at "
                                     f"0x{address:x}")
                for i in dropped:
                    log.warning("PID %d: int3 at 0x%x (%s+0x%x) not restored: no uprobe "
                                "is armed there now", pid, address + i,
                                os.readlink(f"/proc/{pid}/fd/{fd}"),
                                v.pgoff + address + i - v.start)
            if progress:
                progress(run.nr_pages)
    finally:
        for fd in (pages, mem, *files.values()):
            os.close(fd)
