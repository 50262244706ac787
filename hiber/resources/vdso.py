"""The vDSO and vvar, both halves (spec §4).

A restored process must find the vdso where the image had it (glibc caches
vdso function pointers at start-up). When the running kernel's vdso has the
same symbol offsets and size, and its vvar the same size and order, the
kernel's own vdso+vvar can simply be moved there ("in-place remap").
Otherwise the dumped vdso stays, as a proxy whose entry points jump into
this kernel's vdso, parked where the image has nothing.

    dump      recognise_proxy: a process restored behind a proxy is dumped
              as it was before (its mark says which areas are which)
    plan      image_layout / runtime_layout / plan: in place or proxy,
              decided before a restore creates anything
    restore   park the kernel's areas out of the way before the memory is
              rebuilt, then place them (or build the proxy) once it is
"""

import io
import logging
import os
import struct
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile

from ..errors import HiberError
from ..images import vma as V
from ..inject.remote import InjectionError, find_syscall_instruction
from ..kernel import proc
from .memory import free_gap

log = logging.getLogger(__name__)

# the x86 symbol list CRIU compares, in its order (spec §4.1)
SYMBOLS = ["__vdso_clock_gettime", "__vdso_getcpu", "__vdso_gettimeofday", "__vdso_time",
           "__kernel_sigreturn", "__kernel_rt_sigreturn", "__vdso_clock_gettime64"]
MISSING = (1 << 64) - 1


def symbol_offsets(elf_bytes):
    """Offsets of SYMBOLS inside a vdso image (st_value - PT_LOAD p_vaddr)."""
    elf = ELFFile(io.BytesIO(bytes(elf_bytes)))
    load = next(s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD")
    dynsym = elf.get_section_by_name(".dynsym")
    found = {}
    if dynsym is not None:
        for sym in dynsym.iter_symbols():
            if sym.name in SYMBOLS and sym["st_value"]:
                found[sym.name] = sym["st_value"] - load["p_vaddr"]
    return tuple(found.get(name, MISSING) for name in SYMBOLS)


@dataclass(frozen=True)
class VdsoLayout:
    """Where a process has its vdso and vvar, and what the vdso exports."""
    vdso_start: int
    vdso_size: int
    vvar_start: int | None
    vvar_size: int          # [vvar] and [vvar_vclock] together
    symbols: tuple

    @property
    def vdso_before_vvar(self):
        return self.vvar_start is not None and self.vdso_start < self.vvar_start

    def matches(self, other):
        """CRIU's blobs_matches (spec §4.2): same sizes, offsets, order."""
        if self.vdso_size != other.vdso_size or self.symbols != other.symbols:
            return False
        if self.vvar_start is not None and other.vvar_start is not None:
            return (self.vvar_size == other.vvar_size
                    and self.vdso_before_vvar == other.vdso_before_vvar)
        return True


def kernel_areas(pid):
    """[(name, start, end)] of vvar, vvar_vclock and vdso in a live process."""
    return [(m.path, m.start, m.end) for m in proc.maps(pid)
            if m.path in ("[vvar]", "[vvar_vclock]", "[vdso]")]


def runtime_layout(pid=None):
    """The running kernel's vdso/vvar, as mapped in process pid (default: us)."""
    pid = pid or os.getpid()
    areas = kernel_areas(pid)
    vdso = next((a for a in areas if a[0] == "[vdso]"), None)
    if vdso is None:
        return None
    vvars = [a for a in areas if a[0] != "[vdso]"]
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(vdso[1])
        data = mem.read(vdso[2] - vdso[1])
    return VdsoLayout(vdso[1], vdso[2] - vdso[1], vvars[0][1] if vvars else None,
                      sum(end - start for _, start, end in vvars), symbol_offsets(data))


def image_layout(vmas, read_pages):
    """The dumped process's vdso/vvar from its vma_entry list; ``read_pages``
    (start, size) gives the dumped vdso bytes."""
    vdso = next((v for v in vmas if v.status & V.VMA_AREA_VDSO), None)
    vvar = next((v for v in vmas if v.status & V.VMA_AREA_VVAR), None)
    if vdso is None:
        return None
    data = read_pages(vdso.start, vdso.end - vdso.start)
    return VdsoLayout(vdso.start, vdso.end - vdso.start, vvar.start if vvar else None,
                      (vvar.end - vvar.start) if vvar else 0, symbol_offsets(data))


# ---- the proxy and its mark (spec §4.2-§4.4) --------------------------------

MARK_V1 = 0x6f73647675697263  # "criuvdso"
MARK_V2 = 0x4f53447675697263  # "criuvDSO"
MARK_V3 = 0x4f53447655495243  # "CRIUvDSO"
MARK_VERSION = 3
MARK_SIZE = 40
ALL_ONES = (1 << 64) - 1


@dataclass(frozen=True)
class VdsoMark:
    """Written at the start of a restored process's runtime vdso when it runs
    behind a proxy: tells the next dump where the real (proxy) vdso and the
    process's own vvar are, and which runtime vvar goes with the mark."""
    orig_vdso: int
    orig_vvar: int   # ALL_ONES: none
    rt_vvar: int     # ALL_ONES: unknown

    def pack(self):
        return struct.pack("<5Q", MARK_V3, self.orig_vdso, MARK_VERSION, self.orig_vvar,
                           self.rt_vvar)

    @classmethod
    def parse(cls, data):
        """The mark in ``data`` (the first bytes of a mapping), or None.
        Older marks are upgraded as CRIU upgrades them."""
        if len(data) < 16:
            return None
        signature, orig_vdso = struct.unpack_from("<QQ", data)
        if signature == MARK_V1:
            return cls(orig_vdso, ALL_ONES, ALL_ONES)
        if signature == MARK_V2 and len(data) >= 32:
            _, orig_vvar = struct.unpack_from("<QQ", data, 16)
            return cls(orig_vdso, orig_vvar, ALL_ONES)
        if signature == MARK_V3 and len(data) >= MARK_SIZE:
            _, orig_vvar, rt_vvar = struct.unpack_from("<QQQ", data, 16)
            return cls(orig_vdso, orig_vvar, rt_vvar)
        return None


def trampoline(target):
    """x86-64 jump to an absolute address: movabs rax, target; jmp rax; int3 x4."""
    return b"\x48\xb8" + struct.pack("<Q", target) + b"\xff\xe0" + b"\xcc" * 4


def proxy_jumps(image, runtime):
    """[(offset in the proxy, target offset in the runtime vdso)] for every
    symbol the dumped vdso exports; the runtime vdso must export them too."""
    jumps = []
    for name, ours, theirs in zip(SYMBOLS, image.symbols, runtime.symbols):
        if ours == MISSING:
            continue
        if theirs == MISSING:
            raise ValueError(f"this kernel's vdso has no {name}, which the dumped "
                             "process may call")
        jumps.append((ours, theirs))
    return jumps


@dataclass(frozen=True)
class VdsoPlan:
    """What restore will do with one process's vdso."""
    pid: int
    vdso: tuple           # (start, end) in the image
    vvar: tuple | None    # (start, end) in the image
    proxy: bool           # False: the kernel's vdso+vvar move there
    jumps: tuple          # proxy only: (proxy offset, runtime offset)


def plan(pid, image, runtime, force_proxy=False):
    if image is None:
        return None
    proxy = force_proxy or not image.matches(runtime)
    vvar = None if image.vvar_start is None else \
        (image.vvar_start, image.vvar_start + image.vvar_size)
    return VdsoPlan(pid, (image.vdso_start, image.vdso_start + image.vdso_size), vvar, proxy,
                    tuple(proxy_jumps(image, runtime)) if proxy else ())


# ---- dump: a process already behind a proxy (spec §4.4) ------------------------

class VdsoError(HiberError):
    """A vdso mark that does not add up."""


def recognise_proxy(pid, vmas):
    """A process restored behind a vdso proxy carries a mark at the start
    of its runtime vdso (spec §4.4): the proxy is its vdso, its old vvar
    area its vvar, and the runtime vdso and vvar are dropped from the
    image, so that the next restore sees the process as it was. Returns the
    vma_entry list to dump (``vmas`` itself when there is no mark)."""
    marked = []
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for v in vmas:
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
        return vmas
    if len(marked) > 1:
        raise VdsoError(f"PID {pid}: two vdso marks, at 0x{marked[0][0].start:x}"
                        f" and 0x{marked[1][0].start:x}")
    rt_vdso, mark = marked[0]
    by_start = {v.start: v for v in vmas}
    proxy = by_start.get(mark.orig_vdso)
    if proxy is None:
        raise VdsoError(f"PID {pid}: the vdso mark names 0x{mark.orig_vdso:x}, "
                        "where nothing is mapped")
    proxy.status = V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE | V.VMA_AREA_VDSO
    if mark.orig_vvar != ALL_ONES and mark.orig_vvar in by_start:
        by_start[mark.orig_vvar].status = \
            V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE | V.VMA_AREA_VVAR
    dropped = {rt_vdso.start}
    rt_vvar = by_start.get(mark.rt_vvar)
    if rt_vvar is not None and rt_vvar.status & V.VMA_AREA_VVAR:
        dropped.add(rt_vvar.start)
    log.info("PID %d: vdso proxy at 0x%x recognised; dropped the runtime vdso at 0x%x",
             pid, mark.orig_vdso, rt_vdso.start)
    return [v for v in vmas if v.start not in dropped]


# ---- restore: inside the task, by injected syscalls ------------------------------

def park(task, areas, occupied):
    """Move the kernel's vvar/vvar_vclock/vdso (``areas``, from
    kernel_areas), together (kernel-facts: the vdso reaches vvar
    RIP-relatively), to a place free in both the stub's layout and the
    image's (``occupied``), before the image's memory is rebuilt."""
    if not areas:
        return []
    base, end = areas[0][1], areas[-1][2]
    target = free_gap(occupied, end - base)
    occupied.append((target, target + end - base))
    return _move(task, areas, target)


def _move(task, areas, new_base):
    base = areas[0][1]
    moved = []
    vdso_old = next((s for name, s, _ in areas if name == "[vdso]"), None)
    for name, start, end in areas:
        new = new_base + (start - base)
        if new != start:
            task.syscall("mremap", start, end - start, end - start, 3, new)  # MAYMOVE|FIXED
        moved.append((name, new, new + end - start))
    vdso_new = next((s for name, s, _ in moved if name == "[vdso]"), None)
    if vdso_old is not None and task.gadget and vdso_old <= task.gadget < vdso_old + 0x100000:
        # the injection gadget is a syscall instruction inside the vdso
        task.gadget += vdso_new - vdso_old
    return moved


def place(task, decision, parked, read_pages):
    """In-place remap when the dumped vdso matches this kernel's: the
    kernel's vdso+vvar go, together, where the image had them. Otherwise the
    dumped vdso becomes a proxy (spec §4.2). ``decision`` is the VdsoPlan
    (None: the process had no vdso); ``read_pages`` (start, size) gives the
    dumped vdso's bytes."""
    if decision is None:
        _drop(task, parked)
        return
    if decision.proxy:
        _build_proxy(task, decision, parked, read_pages)
        return
    vdso_offset = next(s for name, s, _ in parked if name == "[vdso]") - parked[0][1]
    moved = _move(task, parked, decision.vdso[0] - vdso_offset)
    vvar_now = next((s for name, s, _ in moved if name == "[vvar]"), None)
    if decision.vvar and vvar_now != decision.vvar[0]:
        raise VdsoError(f"PID {decision.pid}: the vvar landed at 0x{vvar_now:x}, not at "
                        f"0x{decision.vvar[0]:x}")


def _drop(task, parked):
    """A process that had unmapped its vdso and vvar (or never had them)
    must not find them again. The calls still to come (registers, threads)
    need a syscall instruction: one of the process's own code takes over
    from the vdso's before it goes."""
    if not parked:
        return
    try:
        task.gadget = find_syscall_instruction(task.pid, outside_vdso=True)
    except InjectionError:
        raise VdsoError(f"PID {task.pid}: had no vdso, and none of its code has a syscall "
                        "instruction to restore it with") from None
    for _, start, end in parked:
        task.syscall("munmap", start, end - start)


def _build_proxy(task, decision, parked, read_pages):
    """The dumped vdso stays where the process knows it, with a jump to this
    kernel's vdso at each entry point; the kernel's vdso and vvar stay
    parked where the image has nothing; the mark at the start of the kernel's
    vdso tells the next dump what is what (spec §4.3-§4.4)."""
    start, end = decision.vdso
    task.syscall("mmap", start, end - start, 3, 0x32, -1, 0)  # RW, PRIVATE|ANON|FIXED
    task.write(start, read_pages(start, end - start))
    rt_vdso = next(s for name, s, _ in parked if name == "[vdso]")
    for offset, target in decision.jumps:
        task.write(start + offset, trampoline(rt_vdso + target))
    task.syscall("mprotect", start, end - start, 5)  # r-x
    if decision.vvar:
        # the process's own vvar becomes a stale read-only area, as in CRIU
        vstart, vend = decision.vvar
        task.syscall("mmap", vstart, vend - vstart, 1, 0x32, -1, 0)
    rt_vvar = next((s for name, s, _ in parked if name == "[vvar]"), ALL_ONES)
    mark = VdsoMark(start, decision.vvar[0] if decision.vvar else ALL_ONES, rt_vvar)
    # the kernel's vdso is not writable: /proc/PID/mem writes through (FOLL_FORCE)
    with open(f"/proc/{decision.pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(rt_vdso)
        mem.write(mark.pack())
    log.info("PID %d: vdso proxy at 0x%x -> runtime vdso at 0x%x (%d entry points)",
             decision.pid, start, rt_vdso, len(decision.jumps))
