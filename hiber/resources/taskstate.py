"""The per-thread state that has to come last: credentials (creds.py),
seccomp (seccomp.py), scheduling and CPUs (sched.py). This module holds
the order between them, which the kernel dictates, and nothing else.

Restore, for each process after it is rebuilt and before it runs:

1. each thread's credentials, AppArmor label and no_new_privs; then its
   parent-death signal and the process's dumpable flag once more, as a
   credential change clears both (kernel commit_creds);
2. seccomp filters, chains with TSYNC (on the leader) first: after every
   other syscall hiber injects, so that none of those meets a filter;
3. the last capset of a thread whose filters needed CAP_SYS_ADMIN that it
   drops: the process did the same once, so its filter allows it;
4. strict mode, after which a thread may only read, write and exit;
5. from hiber's side: nice, policy, CPUs.

Arguments of those syscalls (groups, capabilities, labels, BPF programs)
are passed in the process's own memory below its stack pointer, saved
and put back byte for byte: a scratch mapping would need a munmap after
the filters are in, which a filter may refuse or punish with death.

Dump: the seccomp filters and CPU affinity of every thread are read once
all threads are stopped and no RemoteTask pins them to one CPU.
"""

import contextlib
import ctypes
import logging

from ..errors import HiberError
from ..inject.remote import RemoteTask, find_syscall_instruction
from ..kernel import proc
from ..kernel.sys import address_of, process_vm_readv, process_vm_writev
from . import core, creds, sched, seccomp

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 3, 4
RED_ZONE = 128  # x86-64 ABI: below the stack pointer, a leaf function's own
LABEL_ROOM = 512 + 4096
MIN_ROOM = 4096


def dump_threads(pid, cores, seccomp_filters):
    """seccomp_mode/seccomp_filter and cpu_affinity of every thread core of
    pid (tid -> core_entry)."""
    seccomp_filters.dump_process(pid, cores)
    online = sched.online_cpus()
    for tid, entry in cores.items():
        sched.dump_affinity(tid, entry.thread_core, online)


def _cores(p):
    return {p.pid: p.core, **p.thread_cores}


class BorrowedMemory:
    """``size`` bytes of the process's own writable memory, below the red
    zone of the leader's dumped stack pointer when the stack has room,
    their bytes put back on exit (threads are all stopped meanwhile)."""

    def __init__(self, pid, sp, size):
        self.pid = pid
        self.size = size
        self.sp = sp
        self.address = None
        self._saved = None

    def _candidates(self):
        top = (self.sp - RED_ZONE) & ~0xf
        writable = [m for m in proc.maps(self.pid)
                    if m.perms[1] == "w" and m.perms[3] == "p" and not m.path.startswith("[v")]
        for m in writable:
            if m.start <= top - self.size and top <= m.end:
                yield top - self.size
        roomy = sorted((m for m in writable if m.inode == 0 and m.end - m.start >= self.size),
                       key=lambda m: m.start - m.end)
        for m in roomy:  # anonymous memory, the largest first
            yield (m.end - self.size) & ~0xf

    def __enter__(self):
        # process_vm_readv/writev, not /proc/PID/mem: after a lazy restore's
        # handover, a page here may still be coming, and only these calls
        # wait for the lazy-pages daemon (/proc/PID/mem's access gives up
        # with EFAULT on a userfaultfd-missing page)
        for address in self._candidates():
            buf = bytearray(self.size)
            try:
                got = process_vm_readv(self.pid, [(address_of(buf), self.size)],
                                       [(address, self.size)])
            except OSError:
                continue  # a guard region, say: the next candidate
            if got == self.size:
                self._saved = buf
                self.address = address
                return address
        raise HiberError(f"PID {self.pid}: no {self.size} bytes of writable memory to pass "
                         "its credentials and seccomp filters through")

    def __exit__(self, *exc):
        saved = (ctypes.c_char * self.size).from_buffer(self._saved)
        if process_vm_writev(self.pid, [(ctypes.addressof(saved), self.size)],
                             [(self.address, self.size)]) != self.size:
            raise HiberError(f"PID {self.pid}: cannot put back its memory at "
                             f"0x{self.address:x}")
        return False


class TaskStatePlan:
    """Checks, before anything is created, that every thread's credentials,
    seccomp filters, scheduling, CPUs and register state can be given back
    here; then gives them back, last (``finish``)."""

    def __init__(self, images, inventory, processes):
        self.filters = seccomp.read_filters(images)
        own = creds.OwnCreds(inventory.lsmtype if inventory.HasField("lsmtype") else 0)
        online = sched.online_cpus()
        enabled = core.enabled_xfeatures()
        self.chains = {}  # tid -> (seccomp mode, [(program, flags)] oldest first)
        for p in processes:
            for tid, entry in _cores(p).items():
                th = entry.thread_core
                core.check_xstate(tid, entry, enabled)
                if not th.HasField("creds"):
                    raise HiberError(f"core-{tid}.img: thread {tid} has no credentials (images "
                                     "of old CRIUs keep them in creds-PID.img, which hiber "
                                     "does not read): it would run as root")
                own.check_thread(tid, th.creds)
                self.chains[tid] = seccomp.chain_for(tid, th, self.filters,
                                                     entry.tc if tid == p.pid else None)
                sched.check_thread(tid, th, online)

    def _room_needed(self, cores):
        need = MIN_ROOM
        for tid, entry in cores.items():
            c = entry.thread_core.creds
            need = max(need, 4 * len(c.groups), LABEL_ROOM + len(c.lsm_profile)
                       + len(c.lsm_sockcreate))
            need = max([need] + [16 + len(program) for program, _ in self.chains[tid][1]])
        return (need + 15) & ~0xf

    def finish(self, p):
        """Steps 1-5 of the module doc for process ``p`` (a restore
        ProcessPlan: pid, core, thread_cores, mm), all threads stopped."""
        cores = _cores(p)
        tids = [p.pid] + [tid for tid in cores if tid != p.pid]
        sp = p.core.thread_info.gpregs.sp
        with BorrowedMemory(p.pid, sp, self._room_needed(cores)) as address, \
                contextlib.ExitStack() as stack:
            gadget = find_syscall_instruction(p.pid)
            remotes = {tid: stack.enter_context(RemoteTask(p.pid, tid, gadget, killed_with_tracer=True)) for tid in tids}
            late_capsets = self._credentials(p, cores, tids, remotes, address)
            by_tsync_first = sorted(tids, key=lambda tid: not any(
                flags & seccomp.FLAG_TSYNC for _, flags in self.chains[tid][1]))
            for tid in by_tsync_first:
                if self.chains[tid][1]:
                    seccomp.install_filters(remotes[tid], address, tid, self.chains[tid][1])
            for tid, final in late_capsets.items():
                creds.finish_capset(remotes[tid], address, tid, final)
            for tid in tids:
                if self.chains[tid][0] == seccomp.MODE_STRICT:
                    seccomp.enter_strict_mode(remotes[tid], tid)
        for tid in tids:  # the RemoteTasks have given back each thread's CPUs
            sched.restore_thread(tid, cores[tid].thread_core)
            creds.verify_thread(p.pid, tid, cores[tid].thread_core.creds)
        log.info("PID %d: credentials, seccomp and scheduling of %d thread(s) restored",
                 p.pid, len(tids))

    def _credentials(self, p, cores, tids, remotes, address):
        """Step 1; returns {tid: capset} for the threads of step 3."""
        late = {}
        for tid in tids:
            th = cores[tid].thread_core
            installs_filters = bool(self.chains[tid][1])
            defer = installs_filters and creds.filters_need_late_capset(th.creds)
            final = creds.restore_thread(remotes[tid], address, p.pid, tid, th.creds,
                                         last_capset=not defer)
            if final:
                late[tid] = final
            # always, after the credentials (a uid change clears it): 0 also
            # clears the SIGKILL-on-parent-death the stub had while half-made
            remotes[tid].syscall("prctl", PR_SET_PDEATHSIG, th.pdeath_sig)
        leader = remotes[p.pid]
        if p.mm.HasField("dumpable") and \
                leader.syscall("prctl", PR_GET_DUMPABLE) != p.mm.dumpable:
            leader.syscall("prctl", PR_SET_DUMPABLE, p.mm.dumpable)
        return late
