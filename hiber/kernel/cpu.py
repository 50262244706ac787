"""CPU facts: CPUID, and where each XSAVE component lives in the xstate area.

The xstate that ptrace returns (NT_X86_XSTATE) is in the standard XSAVE
format, whose component offsets are the CPU's choice (CPUID leaf 0xD): on
the AMD machines here AVX-512's opmask sits at 832, on Intel at 1088.
Python cannot execute CPUID itself, so we run a 30-byte function from an
executable anonymous mapping through ctypes.
"""

import ctypes
import functools
import mmap

# push rbx; mov r8,rdx; mov eax,edi; mov ecx,esi; cpuid;
# mov [r8],eax; mov [r8+4],ebx; mov [r8+8],ecx; mov [r8+12],edx; pop rbx; ret
_CPUID_CODE = bytes.fromhex(
    "53" "4989d0" "89f8" "89f1" "0fa2"
    "418900" "41895804" "41894808" "4189500c" "5b" "c3")

_CPUID_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                             ctypes.POINTER(ctypes.c_uint32 * 4))


@functools.cache
def _cpuid_function():
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_CPUID_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return page, _CPUID_FN(address)  # keep the mapping alive with the function


def cpuid(leaf, subleaf=0):
    """(eax, ebx, ecx, edx) of CPUID(leaf, subleaf)."""
    out = (ctypes.c_uint32 * 4)()
    _cpuid_function()[1](leaf, subleaf, ctypes.byref(out))
    return tuple(out)


# XSAVE state components (Intel SDM vol. 1, 13.1)
XFEATURE_YMM = 2
XFEATURE_BNDREGS = 3
XFEATURE_BNDCSR = 4
XFEATURE_OPMASK = 5
XFEATURE_ZMM_HI256 = 6
XFEATURE_HI16_ZMM = 7
XFEATURE_PKRU = 9
XFEATURE_CET_USER = 11

XSAVE_HEADER_OFFSET = 512


@functools.cache
def xstate_layout():
    """{component: (offset, size)} for the user-visible components of XCR0."""
    eax, _, _, edx = cpuid(0xD, 0)
    supported = eax | (edx << 32)
    layout = {}
    for component in range(2, 19):
        if supported & (1 << component):
            size, offset, _, _ = cpuid(0xD, component)
            if size and offset:  # supervisor components report offset 0
                layout[component] = (offset, size)
    return layout
