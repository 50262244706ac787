"""The vDSO and vvar: what the image has, what this kernel has, whether they
match (spec §4).

A restored process must find the vdso where the image had it (glibc caches
vdso function pointers at start-up). When the running kernel's vdso has the
same symbol offsets and size, and its vvar the same size and order, the
kernel's own vdso+vvar can simply be moved there ("in-place remap").
"""

import io
import os
import struct
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile

from ..kernel import proc

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
    from ..images import vma as V
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
