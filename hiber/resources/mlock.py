"""Memory locking and sealing: mlockall(MCL_FUTURE[|MCL_ONFAULT]) of the
process (task_core mlockall), and per VMA lock-on-fault and mseal()
(vma_entry lock_onfault, sealed), all three fields of hiber's own: CRIU 4.2
keeps only MAP_LOCKED in vma_entry.flags.

VmFlags in /proc/PID/smaps tell them apart: "lo" VM_LOCKED, "lf"
VM_LOCKONFAULT (mlock2(MLOCK_ONFAULT) or MCL_ONFAULT), "sl" VM_SEALED.
mlockall(MCL_FUTURE) shows nowhere but in the VMAs created after it (the
kernel adds VM_LOCKED, and VM_LOCKONFAULT with MCL_ONFAULT, from
mm->def_flags to every new mapping), so the dump maps a probe page inside
the task and reads its flags.
"""

from ..images import vma as V
from ..images.pagemap import PAGE_SIZE
from ..inject.remote import MAP_FIXED_NOREPLACE
from ..kernel import proc

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
MLOCK_ONFAULT = 1
PROT_NONE = 0
PROBE_FLOOR = 0x100000


def _vmflags_at(pid, address):
    """VmFlags of the VMA starting at address; reads smaps only up to it
    (the kernel walks page tables for each VMA it prints)."""
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                start = int(head.split("-")[0], 16)
                if inside or start > address:
                    break
                inside = start == address
            elif inside and line.startswith("VmFlags:"):
                return set(line.split()[1:])
    return set()


# ---- dump --------------------------------------------------------------------

def mlockall_flags(pid, remote):
    """MCL_FUTURE|MCL_ONFAULT as the process set them, or 0. The probe is
    placed low, where smaps lists it first, and is unmapped again, even
    when SIGTERM has asked the dump to stop (a hiber killed meanwhile
    leaves it: docs/interrupted-dumps.md).

    Only a process that holds locked memory is probed: one that locks
    nothing (VmLck 0, mm->locked_vm) has not used mlockall(MCL_CURRENT),
    and MCL_FUTURE alone locks every mapping made after it, so it shows in
    VmLck as soon as the process maps anything. Not probing the others
    keeps the probe, and the page a killed hiber would leave, out of
    processes that never lock memory."""
    if proc.status(pid).get("VmLck", "0 kB").split()[0] == "0":
        return 0
    address = PROBE_FLOOR
    for m in proc.maps(pid):  # the lowest free page from 1 MiB up
        if m.start >= address + PAGE_SIZE:
            break
        address = max(address, m.end)
    probe = remote.syscall("mmap", address, PAGE_SIZE, PROT_NONE,
                           V.MAP_PRIVATE | V.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
    try:
        flags = _vmflags_at(pid, probe)
    finally:
        remote.undo_syscall("munmap", probe, PAGE_SIZE)
    if "lo" not in flags:
        return 0
    return MCL_FUTURE | (MCL_ONFAULT if "lf" in flags else 0)


def dump_vma(vmflags, entry):
    """lock_onfault and sealed of one vma_entry, from its VmFlags."""
    if "lf" in vmflags:
        entry.lock_onfault = True
    if "sl" in vmflags:
        entry.sealed = True


# ---- restore -----------------------------------------------------------------

def mmap_flags(vma):
    """Flags to create the VMA with: a lock-on-fault VMA without MAP_LOCKED,
    which would fault in all of it; restore_vmas() locks it afterwards."""
    return vma.flags & ~V.MAP_LOCKED if vma.lock_onfault else vma.flags


def restore_vmas(remote, vmas):
    """Lock-on-fault, then seals: after every mprotect/madvise of the
    restore, which a seal forbids."""
    for v in vmas:
        if v.lock_onfault:
            remote.syscall("mlock2", v.start, v.end - v.start, MLOCK_ONFAULT)
    for v in vmas:
        if v.sealed:
            remote.syscall("mseal", v.start, v.end - v.start, 0)


def restore_mlockall(remote, tc):
    """mlockall(MCL_FUTURE[|MCL_ONFAULT]) without MCL_CURRENT: the VMAs that
    exist carry their own lock flags; only mappings made from now on are
    affected, so this comes after the restore has made all of its own."""
    if tc.mlockall:
        remote.syscall("mlockall", tc.mlockall & (MCL_FUTURE | MCL_ONFAULT))

