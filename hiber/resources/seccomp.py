"""Seccomp: strict mode and filter chains, per thread (seccomp.img and
thread_core seccomp_mode/seccomp_filter, spec §2.5, §2.18).

The layout of seccomp.img is CRIU's (criu/seccomp.c): a thread names the
*oldest* filter of its chain, and each filter's ``prev`` names the next
newer one, so that following ``prev`` from the thread's index gives the
filters in the order they were installed. (The kernel numbers them the same
way for PTRACE_SECCOMP_GET_FILTER: index 0 is the first installed.)

Whether two threads share one filter object is not visible from user space.
CRIU's answer, kept here: when every thread of a process has the same chain,
the leader's filters get SECCOMP_FILTER_FLAG_TSYNC and the other threads are
written as having none; installing them on the leader with TSYNC gives every
thread the same filter objects again, and an application that later
installs a filter with TSYNC itself still can.
"""

import errno
import struct

from ..errors import HiberError
from ..images.messages import classes
from ..inject.seccomp import ACTION_FULL, RET_USER_NOTIF
from ..kernel import proc
from ..kernel import ptrace as pt

C = classes

MODE_DISABLED, MODE_STRICT, MODE_FILTER = 0, 1, 2
FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_NEW_LISTENER = 1, 2, 4, 8
FLAG_TSYNC_ESRCH, FLAG_WAIT_KILLABLE_RECV = 16, 32
RESTORABLE_FLAGS = FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW
SECCOMP_SET_MODE_FILTER = 1
PR_SET_SECCOMP = 22
BPF_INSN_SIZE = 8
BPF_MAXINSNS = 4096
BPF_RET_K = 0x06


class SeccompError(HiberError):
    pass


# ---- dump ------------------------------------------------------------------

def _chain_of(pid, tid):
    """[(program, flags)] of a stopped thread, oldest filter first."""
    chain = []
    while True:
        try:
            program = pt.seccomp_filter(tid, len(chain))
        except OSError as e:
            if e.errno == errno.ENOENT:  # past the newest filter
                return chain
            raise SeccompError(f"TID {tid} of PID {pid}: cannot read its seccomp filter "
                               f"#{len(chain)}: {e.strerror} (hiber needs CAP_SYS_ADMIN)") from None
        try:
            flags = pt.seccomp_filter_flags(tid, len(chain))
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            flags = 0  # a kernel without PTRACE_SECCOMP_GET_METADATA (before 4.16)
        chain.append((program, flags))


def _notifies_user_space(program):
    """True when the filter can return SECCOMP_RET_USER_NOTIF: a supervisor
    holds its listener fd, which a restore cannot give back, so the
    notified syscalls would fail with ENOSYS afterwards."""
    for offset in range(0, len(program), BPF_INSN_SIZE):
        code, _, _, k = struct.unpack_from("<HBBI", program, offset)
        if code == BPF_RET_K and k & ACTION_FULL == RET_USER_NOTIF:
            return True
    return False


class SeccompFilters:
    """seccomp.img as it is being built, and each thread's place in it."""

    def __init__(self):
        self.entry = C["seccomp_entry"]()
        self._chains = {}  # chain (oldest first) -> index of its oldest filter

    def dump_process(self, pid, cores):
        """Set seccomp_mode/seccomp_filter of every thread core of pid
        (``cores``: tid -> core_entry, threads stopped)."""
        modes = {tid: int(proc.status(pid, tid).get("Seccomp", "0")) for tid in cores}
        chains = {tid: _chain_of(pid, tid) if mode == MODE_FILTER else []
                  for tid, mode in modes.items()}
        for tid, chain in chains.items():
            if any(_notifies_user_space(program) for program, _ in chain):
                raise SeccompError(f"TID {tid} of PID {pid} has a seccomp filter that notifies a "
                                   "user-space supervisor (SECCOMP_RET_USER_NOTIF), whose "
                                   "listener hiber cannot restore; dump the process without it")
        if all(m == MODE_FILTER for m in modes.values()) and \
                all(chain == chains[pid] for chain in chains.values()):
            # CRIU's try_use_tsync(): one chain, installed on the leader with TSYNC
            chains = {pid: [(program, flags | FLAG_TSYNC) for program, flags in chains[pid]]}
            modes = {tid: MODE_FILTER if tid == pid else MODE_DISABLED for tid in modes}
        for tid, core in cores.items():
            th = core.thread_core
            th.ClearField("seccomp_mode")
            th.ClearField("seccomp_filter")
            if modes[tid] != MODE_DISABLED:
                th.seccomp_mode = modes[tid]
            if modes[tid] == MODE_FILTER:
                th.seccomp_filter = self._store(chains[tid])

    def _store(self, chain):
        key = tuple(chain)
        if key not in self._chains:
            newer = None
            for program, flags in reversed(chain):  # newest first, as CRIU writes them
                f = self.entry.seccomp_filters.add(filter=program, flags=flags)
                if newer is not None:
                    f.prev = newer
                newer = len(self.entry.seccomp_filters) - 1
            self._chains[key] = newer
        return self._chains[key]


# ---- restore -----------------------------------------------------------------

def read_filters(images):
    """The filters of seccomp.img (CRIU always writes it, maybe empty)."""
    entries = images.read_optional("SECCOMP")
    return list(entries[0].seccomp_filters) if entries else []


def chain_for(tid, thread_core, filters, task_core=None):
    """(mode, [(program, flags)] oldest first) of a thread core; refuses
    what cannot be installed as dumped. ``task_core``: the leader's, whose
    old process-wide fields (11, 12) images of old CRIUs use instead; their
    filters are then installed with TSYNC, as CRIU does for them."""
    th, tsync = thread_core, 0
    if task_core is not None and task_core.HasField("old_seccomp_mode") and \
            not th.HasField("seccomp_mode"):
        th = C["thread_core_entry"](futex_rla=0, futex_rla_len=0,
                                    seccomp_mode=task_core.old_seccomp_mode,
                                    seccomp_filter=task_core.old_seccomp_filter)
        tsync = FLAG_TSYNC
    mode, chain = _chain_for(tid, th, filters)
    return mode, [(program, flags | tsync) for program, flags in chain]


def _chain_for(tid, thread_core, filters):
    mode = thread_core.seccomp_mode if thread_core.HasField("seccomp_mode") else MODE_DISABLED
    if mode not in (MODE_DISABLED, MODE_STRICT, MODE_FILTER):
        raise SeccompError(f"core-{tid}.img: unknown seccomp mode {mode} of thread {tid}")
    if mode != MODE_FILTER:
        return mode, []
    chain = []
    index = thread_core.seccomp_filter
    while True:
        if index >= len(filters) or len(chain) >= len(filters):
            raise SeccompError(f"seccomp.img: the filter chain of thread {tid} names filter "
                               f"#{index} of {len(filters)} (or loops): the images are damaged")
        f = filters[index]
        program = bytes(f.filter)
        if not program or len(program) % BPF_INSN_SIZE or \
                len(program) // BPF_INSN_SIZE > BPF_MAXINSNS:
            raise SeccompError(f"seccomp.img: filter #{index} of thread {tid} is "
                               f"{len(program)} bytes, not a BPF program: the images are damaged")
        flags = f.flags if f.HasField("flags") else 0
        if flags & ~RESTORABLE_FLAGS:
            raise SeccompError(f"seccomp.img: filter #{index} of thread {tid} has flags "
                               f"0x{flags:x}; hiber can restore only TSYNC, LOG and SPEC_ALLOW "
                               "(a user-notification listener cannot be given back)")
        chain.append((program, flags))
        if not f.HasField("prev"):
            return mode, chain
        index = f.prev


def install_filters(remote, address, tid, chain):
    """Each filter of the chain, oldest first, by seccomp(2) inside the
    thread; ``address`` is task memory for the sock_fprog and the program.
    The thread needs CAP_SYS_ADMIN or no_new_privs (kernel seccomp_prepare)."""
    for program, flags in chain:
        instructions = len(program) // BPF_INSN_SIZE
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        remote.write(address, struct.pack("<HxxxxxxQ", instructions, address + 16)
                     + program)
        got = remote.syscall_raw("seccomp", SECCOMP_SET_MODE_FILTER, flags, address)
        if got > 0:  # TSYNC reports the thread it could not synchronise
            raise SeccompError(f"TID {tid}: seccomp filter with TSYNC could not reach thread "
                               f"{got}, which has filters of its own")
        if got < 0:
            raise SeccompError(f"TID {tid}: installing its seccomp filter failed "
                               f"(errno {-got}); it needs CAP_SYS_ADMIN or no_new_privs")


def enter_strict_mode(remote, tid):
    """The very last call into a thread: afterwards it may only read, write,
    exit and sigreturn."""
    got = remote.syscall_raw("prctl", PR_SET_SECCOMP, MODE_STRICT, 0, 0, 0)
    if got:
        raise SeccompError(f"TID {tid}: entering seccomp strict mode failed (errno {-got})")
