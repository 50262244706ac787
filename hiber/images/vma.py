"""VMA status bits and mmap constants as CRIU's images use them (spec §3)."""

VMA_AREA_REGULAR = 1 << 0
VMA_AREA_STACK = 1 << 1
VMA_AREA_VSYSCALL = 1 << 2
VMA_AREA_VDSO = 1 << 3
VMA_AREA_HEAP = 1 << 5
VMA_FILE_PRIVATE = 1 << 6
VMA_FILE_SHARED = 1 << 7
VMA_ANON_SHARED = 1 << 8
VMA_ANON_PRIVATE = 1 << 9
VMA_AREA_SYSVIPC = 1 << 10
VMA_AREA_SOCKET = 1 << 11
VMA_AREA_VVAR = 1 << 12
VMA_AREA_AIORING = 1 << 13
VMA_AREA_MEMFD = 1 << 14
VMA_AREA_SHSTK = 1 << 15
VMA_AREA_GUARD = 1 << 16
VMA_AREA_UPROBES = 1 << 17
VMA_UNSUPP = 1 << 31

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_DROPPABLE = 0x1, 0x2, 0x8
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x100
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_HUGETLB = 0x40000
# the huge page size of MAP_HUGETLB (and MFD_HUGETLB) is log2(bytes) in bits
# 26-31 of the flags (uapi/asm-generic/hugetlb_encode.h)
HUGETLB_SIZE_SHIFT = 26
MFD_HUGETLB = 0x4


def hugetlb_size_bits(page_bytes):
    return (page_bytes.bit_length() - 1) << HUGETLB_SIZE_SHIFT


def prot_text(prot):
    return "".join(c if prot & bit else "-" for c, bit in
                   (("r", PROT_READ), ("w", PROT_WRITE), ("x", PROT_EXEC)))


def kind_of(vma):
    """A short label for what a vma_entry is."""
    s = vma.status
    if s & VMA_AREA_GUARD and not s & VMA_AREA_REGULAR:
        return "guard"
    for bit, label in ((VMA_AREA_VDSO, "vdso"), (VMA_AREA_VVAR, "vvar"),
                       (VMA_AREA_VSYSCALL, "vsyscall"), (VMA_AREA_AIORING, "aio ring"),
                       (VMA_AREA_SYSVIPC, "sysv shm"), (VMA_AREA_SHSTK, "shadow stack"),
                       (VMA_AREA_HEAP, "heap")):
        if s & bit:
            return label
    if s & VMA_AREA_MEMFD:
        return "memfd shared" if s & VMA_FILE_SHARED else "memfd private"
    if s & VMA_FILE_SHARED:
        return "file shared"
    if s & VMA_FILE_PRIVATE:
        return "file private"
    if s & VMA_ANON_SHARED:
        return "anon shared"
    if vma.flags & MAP_GROWSDOWN:
        return "stack"
    return "anon private"


def is_private(vma):
    """Whether CRIU walks this VMA's pages into the task pagemap (spec §1.8)."""
    s = vma.status
    if s & (VMA_AREA_SHSTK | VMA_AREA_AIORING):
        return True
    return bool(s & VMA_AREA_REGULAR and s & (VMA_ANON_PRIVATE | VMA_FILE_PRIVATE)
                and vma.end <= TASK_SIZE)


TASK_SIZE = (1 << 47) - 4096  # x86-64, 4-level page tables
