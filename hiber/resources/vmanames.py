"""Names of anonymous mappings: prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)
gives a private anonymous VMA a name, which maps shows as ``[anon:NAME]``
(kernel 5.17+, CONFIG_ANON_VMA_NAME). CRIU 4.2 drops them; hiber keeps the
name in a vma_entry field of its own (anon_name) and gives it back.

A named heap or stack shows as [heap] or [stack], its name hidden from
maps: such a name is not seen, so not kept. A named *shared* anonymous
mapping ([anon_shmem:NAME]) is refused by the dump (vmas.py): restore maps
shared memory from a file, and the kernel names only true anonymous VMAs.
"""

from ..errors import RestoreError
from ..kernel.sys import PR_SET_VMA, PR_SET_VMA_ANON_NAME, can_name_anonymous_mappings

PREFIX = "[anon:"


def dump_name(special, entry):
    """The name of a VMA maps shows as ``special`` ("[anon:NAME]"), if any."""
    if special.startswith(PREFIX):
        entry.anon_name = special[len(PREFIX):-1]


# ---- restore -------------------------------------------------------------------

def refuse_names_this_kernel_lacks(pid, vmas):
    """Before a restore: a named mapping needs a kernel that can name it."""
    named = next((v for v in vmas if v.HasField("anon_name")), None)
    if named is not None and not can_name_anonymous_mappings():
        raise RestoreError(f"PID {pid}: mapping {named.start:x}-{named.end:x} is named "
                           f"[anon:{named.anon_name}], and this kernel cannot name mappings "
                           "(CONFIG_ANON_VMA_NAME): restore on a kernel that can")


def restore_names(remote, vmas, scratch):
    """The names of anonymous mappings (prctl PR_SET_VMA_ANON_NAME), passed
    through ``scratch`` in the task. The kernel keeps a name per VMA and
    merges neighbours only when their names match, so naming comes after
    every VMA exists and before locks and seals."""
    for v in vmas:
        if v.HasField("anon_name"):
            remote.write(scratch, v.anon_name.encode() + b"\0")
            remote.syscall("prctl", PR_SET_VMA, PR_SET_VMA_ANON_NAME, v.start, v.end - v.start,
                           scratch)
