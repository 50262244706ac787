"""Threads and tasks: core-TID.img (registers, FPU, TLS, signals, timers,
rlimits, credentials, rseq, ...), spec §2.3-§2.10.

Per-thread facts come from ptrace and /proc; what only the task itself can
tell (sigactions, sigaltstack, itimers, POSIX timer values, prctl values)
comes from syscalls injected into it. Timers have a module of their own
(timers.py).
"""

import ctypes
import logging
import struct

from ..errors import HiberError
from ..images.messages import classes
from ..kernel import cpu, proc
from ..kernel import ptrace as pt
from ..kernel.sys import get_robust_list, syscall
from . import creds, mlock, sched, timers

log = logging.getLogger(__name__)

C = classes

TASK_ALIVE, TASK_DEAD, TASK_STOPPED = 1, 2, 3
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
EINTR = 4
SIGKILL, SIGCONT, SIGSTOP = 9, 18, 19
RLIMIT_COUNT = 16

# prctl options
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_GET_CHILD_SUBREAPER = 37
PR_GET_TID_ADDRESS = 40
PR_GET_THP_DISABLE = 42
MAX_XSTATE = 1 << 14
# membarrier(2): MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3+); before it, a
# barrier command fails with EPERM unless the process registered for it, and
# each REGISTER_* command is its barrier command shifted left by one
MEMBARRIER_CMD_GET_REGISTRATIONS = 1 << 9
MEMBARRIER_BARRIERS = (1 << 3, 1 << 5, 1 << 7)  # PRIVATE_EXPEDITED, _SYNC_CORE, _RSEQ


STARTED_AGAIN = {7}  # poll


def gpregs_after_restart_fixup(regs):
    """user_x86_regs_entry, with the syscall-restart fixup CRIU stores (§2.6).

    A thread stopped inside an interrupted syscall shows rax = -ERESTART*;
    images hold the registers as the kernel would leave them to run on:
    restartable calls point back at the syscall instruction with rax =
    the syscall number, RESTART_RESTARTBLOCK ones return -EINTR, as with
    criu: their restart block (the time left) stays in the kernel.  But
    poll() is started again, rather than failing with an EINTR no signal
    explains (programs such as tail -f give up on it): it then waits up to
    its whole timeout again, its arguments being still in the registers.
    """
    values = {name: regs[i] for i, name in enumerate(pt.GPREG_NAMES)}
    ax = values["ax"] - (1 << 64) if values["ax"] >> 63 else values["ax"]
    if values["orig_ax"] >> 63 == 0:  # stopped in a syscall
        if -ax in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND) or \
                (-ax == ERESTART_RESTARTBLOCK and values["orig_ax"] in STARTED_AGAIN):
            values["ax"] = values["orig_ax"]
            values["ip"] -= 2
        elif -ax == ERESTART_RESTARTBLOCK:
            values["ax"] = (-EINTR) & ((1 << 64) - 1)
    return C["user_x86_regs_entry"](mode=1, **values)


def _words(data, offset, count, fmt):
    size = struct.calcsize(fmt)
    return list(struct.unpack_from(f"<{count}{fmt}", data, offset)) if \
        offset + count * size <= len(data) else [0] * count


# XSAVE components held in user_x86_xsave_entry: (component, field, number
# of elements written when the CPU has it, element format) (spec §2.6)
XSAVE_ARRAYS = [(cpu.XFEATURE_YMM, "ymmh_space", 64, "I"),
                (cpu.XFEATURE_BNDREGS, "bndreg_state", 8, "Q"),
                (cpu.XFEATURE_BNDCSR, "bndcsr_state", 8, "Q"),
                (cpu.XFEATURE_OPMASK, "opmask_reg", 8, "Q"),
                (cpu.XFEATURE_ZMM_HI256, "zmm_upper", 64, "Q"),
                (cpu.XFEATURE_HI16_ZMM, "hi16_zmm", 128, "Q"),
                (cpu.XFEATURE_PKRU, "pkru", 2, "I")]


# XSAVE components CRIU's user_x86_xsave_entry can hold: x87, SSE and the
# arrays above (CET is written apart, from the shadow stack status)
CARRIED_XFEATURES = {0, 1} | {feature for feature, _, _, _ in XSAVE_ARRAYS}
XFEATURE_NAMES = {0: "x87", 1: "SSE", 2: "AVX", 3: "MPX", 4: "MPX", 5: "AVX-512",
                  6: "AVX-512", 7: "AVX-512", 9: "protection keys (PKRU)", 11: "CET",
                  17: "AMX", 18: "AMX", 19: "APX"}
ARCH_GET_XCOMP_SUPP = 0x1021


class RegisterStateError(HiberError):
    pass


def _xfeature_names(bits):
    names = []
    for bit in sorted(bits):
        name = XFEATURE_NAMES.get(bit, f"xstate component {bit}")
        if name not in names:
            names.append(name)
    return "/".join(names)


def _components(mask):
    return {bit for bit in range(64) if mask >> bit & 1}


def check_dumpable_xstate(pid, tid, xstate):
    """Refuse register state the image format cannot hold (AMX tiles, APX,
    a CET shadow stack) rather than drop it."""
    if len(xstate) > cpu.XSAVE_HEADER_OFFSET:
        in_use = _components(struct.unpack_from("<Q", xstate, cpu.XSAVE_HEADER_OFFSET)[0])
        lost = in_use - CARRIED_XFEATURES
        if lost:
            raise RegisterStateError(
                f"TID {tid} of PID {pid} has {_xfeature_names(lost)} register state in use "
                f"(xstate components {sorted(lost)}), which CRIU's image format cannot hold")
    features = proc.status(pid, tid).get("x86_Thread_features", "")
    if "shstk" in features.split():
        raise RegisterStateError(f"TID {tid} of PID {pid} runs with a CET shadow stack, which "
                                 "hiber cannot restore yet")


def enabled_xfeatures():
    """XSAVE components this kernel enables for user space on this CPU
    (arch_prctl ARCH_GET_XCOMP_SUPP, Linux 5.16+; before it, CPUID's)."""
    value = ctypes.c_uint64()
    try:
        syscall("arch_prctl", ARCH_GET_XCOMP_SUPP, ctypes.byref(value))
        return _components(value.value)
    except OSError:
        return {0, 1} | set(cpu.xstate_layout())


def check_xstate(tid, core_entry, enabled):
    """Refuse, before anything is created, a thread whose registers use
    XSAVE components this machine lacks: its state could not be loaded, and
    code that used them would die of SIGILL."""
    fp = core_entry.thread_info.fpregs
    if not fp.HasField("xsave"):
        return
    missing = _components(fp.xsave.xstate_bv) - enabled
    if missing:
        raise RegisterStateError(
            f"core-{tid}.img: thread {tid} was using {_xfeature_names(missing)} registers "
            f"(xstate components {sorted(missing)}), which this CPU does not have: restore "
            f"it on a machine with {_xfeature_names(missing)}")


def fpregs_from_xstate(xstate):
    """user_x86_fpregs_entry from a standard-format XSAVE area (§2.6)."""
    cwd, swd, twd, fop, rip, rdp, mxcsr, mxcsr_mask = struct.unpack_from("<HHHHQQII", xstate)
    fp = C["user_x86_fpregs_entry"](
        cwd=cwd, swd=swd, twd=twd, fop=fop, rip=rip, rdp=rdp, mxcsr=mxcsr,
        mxcsr_mask=mxcsr_mask, st_space=_words(xstate, 32, 32, "I"),
        xmm_space=_words(xstate, 160, 64, "I"))
    if len(xstate) <= cpu.XSAVE_HEADER_OFFSET:
        return fp
    layout = cpu.xstate_layout()
    xs = fp.xsave
    xs.xstate_bv = struct.unpack_from("<Q", xstate, cpu.XSAVE_HEADER_OFFSET)[0]
    for feature, name, count, fmt in XSAVE_ARRAYS:
        if feature in layout:
            getattr(xs, name).extend(_words(xstate, layout[feature][0], count, fmt))
    if cpu_has_shadow_stack():
        xs.cet.cet = 0
        xs.cet.ssp = 0
    return fp


def cpu_has_shadow_stack():
    return bool(cpu.cpuid(7, 0)[2] & (1 << 7))


def tls_entries(tid):
    """The three GDT TLS slots (entries 12-14) of a thread."""
    out = []
    for entry in (12, 13, 14):
        try:
            d = pt.get_thread_area(tid, entry)
            flags = d.flags
            base, limit = d.base_addr, d.limit
        except OSError:
            flags, base, limit = (1 << 3) | (1 << 5), 0, 0  # empty slot
        out.append(C["user_desc_t"](
            entry_number=entry, base_addr=base, limit=limit,
            seg_32bit=bool(flags & 1), contents_h=bool(flags & 4), contents_l=bool(flags & 2),
            read_exec_only=bool(flags & 8), limit_in_pages=bool(flags & 16),
            seg_not_present=bool(flags & 32), usable=bool(flags & 64)))
    return out


def _queue(siginfos):
    q = C["signal_queue_entry"]()
    for raw in siginfos:
        q.signals.add(siginfo=raw)
    return q


def thread_core(pid, tid, remote, is_leader, scratch):
    """thread_core_entry of one thread; ``remote`` runs inside that thread."""
    head, length = get_robust_list(tid)
    tc = C["thread_core_entry"](futex_rla=head, futex_rla_len=length)
    sched.dump_thread(pid, tid, tc)
    if not is_leader:
        tc.blk_sigset = remote.saved_sigmask
    # sigaltstack(NULL, &old): stack_t is {void *sp; int flags; size_t size}
    remote.syscall("sigaltstack", 0, scratch)
    sp, flags, _pad, size = struct.unpack("<QiiQ", remote.read(scratch, 24))
    tc.sas.ss_sp, tc.sas.ss_size, tc.sas.ss_flags = sp, size, flags & 0xffffffff
    remote.syscall("prctl", PR_GET_PDEATHSIG, scratch)
    pdeath = struct.unpack("<i", remote.read(scratch, 4))[0]
    if pdeath:
        tc.pdeath_sig = pdeath
    tc.signals_p.CopyFrom(_queue(pt.peek_siginfos(tid, shared=False)))
    tc.creds.CopyFrom(creds.dump_thread(pid, tid, remote))
    tc.comm = proc.read_text(pid, "comm", tid).rstrip("\n")
    try:
        rseq = pt.get_rseq_configuration(tid)
        if rseq.rseq_abi_pointer:
            tc.rseq_entry.rseq_abi_pointer = rseq.rseq_abi_pointer
            tc.rseq_entry.rseq_abi_size = rseq.rseq_abi_size
            tc.rseq_entry.signature = rseq.signature
    except OSError as e:
        log.debug("TID %d: no rseq configuration: %s", tid, e)
    tc.cg_set = 1
    return tc


def thread_info(tid, remote, scratch):
    regs = remote.saved_regs
    remote.syscall("prctl", PR_GET_TID_ADDRESS, scratch)
    clear_tid = struct.unpack("<Q", remote.read(scratch, 8))[0]
    xstate = pt.get_regset(tid, pt.NT_X86_XSTATE, MAX_XSTATE)
    check_dumpable_xstate(remote.pid, tid, xstate)
    return C["thread_info_x86"](clear_tid_addr=clear_tid,
                                gpregs=gpregs_after_restart_fixup(regs),
                                fpregs=fpregs_from_xstate(xstate), tls=tls_entries(tid))


SIGACTION = struct.Struct("<QQQQ")  # the kernel's struct sigaction: handler, flags, restorer, mask


def sigactions(remote, scratch):
    """62 sa_entry: signals 1..64 without SIGKILL and SIGSTOP (§2.7). Each
    action lands at its own place in ``scratch`` (4 KiB), read back at once."""
    signals = _signals_without_kill_and_stop()
    for i, sig in enumerate(signals):
        remote.syscall("rt_sigaction", sig, 0, scratch + i * SIGACTION.size, 8)
    raw = remote.read(scratch, len(signals) * SIGACTION.size)
    return [C["sa_entry"](sigaction=handler, flags=flags, restorer=restorer, mask=mask,
                          compat_sigaction=False)
            for handler, flags, restorer, mask in SIGACTION.iter_unpack(raw)]


def zombie_core(pid):
    """The core of a zombie: its state and exit status only (spec §2.3); the
    status is kept in wait() form (exit code << 8, or the killing signal)."""
    s = proc.stat(pid)
    tc = C["task_core_entry"](task_state=TASK_DEAD, exit_code=s.exit_code, personality=0,
                              flags=s.flags, blk_sigset=0, comm=s.comm)
    return C["core_entry"](mtype=1, tc=tc)


def task_core(pid, frozen, remote, scratch):
    """task_core_entry of a live process (the leader's core.tc)."""
    s = proc.stat(pid)
    tc = C["task_core_entry"](
        task_state=TASK_STOPPED if frozen.stopped else TASK_ALIVE, exit_code=0,
        personality=int(proc.read_text(pid, "personality").strip(), 16), flags=s.flags,
        blk_sigset=remote.saved_sigmask, comm=s.comm)
    tc.timers.CopyFrom(timers.dump(pid, remote, scratch))
    limits = proc.limits(pid)[:RLIMIT_COUNT]
    tc.rlimits.rlimits.extend(C["rlimit_entry"](cur=c, max=m) for c, m in limits)
    shared = pt.peek_siginfos(pid, shared=True)
    if frozen.stopped:
        # freeze woke the stopped process with a SIGCONT of hiber's own: it is
        # not the process's (a SIGCONT of its own would have resumed it)
        shared = [s for s in shared if struct.unpack_from("<i", s)[0] != SIGCONT]
    tc.signals_s.CopyFrom(_queue(shared))
    loginuid = creds.loginuid_of(pid)
    if loginuid is not None:
        tc.loginuid = loginuid
    tc.oom_score_adj = proc.read_int(pid, "oom_score_adj", default=0)
    tc.sigactions.extend(sigactions(remote, scratch))
    remote.syscall("prctl", PR_GET_CHILD_SUBREAPER, scratch)
    tc.child_subreaper = bool(struct.unpack("<i", remote.read(scratch, 4))[0])
    if frozen.stopped:
        tc.stop_signo = frozen.stop_signal or SIGSTOP
    mlockall = mlock.mlockall_flags(pid, remote)
    if mlockall:
        tc.mlockall = mlockall
    registrations = membarrier_registrations(remote)
    if registrations:
        tc.membarrier_registration_mask = registrations
    return tc


def membarrier_registrations(remote):
    """The membarrier() commands the process registered for (mm-wide)."""
    got = remote.syscall_raw("membarrier", MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0)
    if got >= 0:
        return got
    return sum(command << 1 for command in MEMBARRIER_BARRIERS
               if remote.syscall_raw("membarrier", command, 0, 0) == 0)


# ---- restore half: put task state back through injected syscalls ----------

PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_MM = 35
PR_SET_MM_MAP = 14
PR_SET_CHILD_SUBREAPER = 36
PR_SET_THP_DISABLE = 41
SS_DISABLE = 2


def restore_mm(remote, scratch, mm, exe_fd):
    """PR_SET_MM_MAP: code/data/brk/stack/args/env bounds, auxv and the exe
    file in one call (the only form allowed without CAP_SYS_RESOURCE)."""
    auxv = struct.pack(f"<{len(mm.mm_saved_auxv)}Q", *mm.mm_saved_auxv)
    auxv_address = scratch + 512
    remote.write(auxv_address, auxv)
    mm_map = struct.pack("<11QQII", mm.mm_start_code, mm.mm_end_code, mm.mm_start_data,
                         mm.mm_end_data, mm.mm_start_brk, mm.mm_brk, mm.mm_start_stack,
                         mm.mm_arg_start, mm.mm_arg_end, mm.mm_env_start, mm.mm_env_end,
                         auxv_address, len(auxv), exe_fd)
    remote.write(scratch, mm_map)
    remote.syscall("prctl", PR_SET_MM, PR_SET_MM_MAP, scratch, len(mm_map), 0)
    if mm.HasField("dumpable"):
        remote.syscall("prctl", PR_SET_DUMPABLE, mm.dumpable)
    if mm.thp_disabled:
        remote.syscall("prctl", PR_SET_THP_DISABLE, 1, 0, 0, 0)


def _signals_without_kill_and_stop():
    return [s for s in range(1, 65) if s not in (SIGKILL, SIGSTOP)]


def restore_sigactions(remote, scratch, sigactions):
    for sig, sa in zip(_signals_without_kill_and_stop(), sigactions):
        remote.write(scratch, struct.pack("<QQQQ", sa.sigaction, sa.flags, sa.restorer, sa.mask))
        remote.syscall("rt_sigaction", sig, scratch, 0, 8)


def set_own_rlimits(limits):
    """The dumped rlimits, set by a stub on itself before hiber takes it over
    (setrlimit in the stub, not injected: the task is still a copy of hiber)."""
    import resource
    for number, limit in enumerate(limits):
        values = tuple(resource.RLIM_INFINITY if v == (1 << 64) - 1 else v
                       for v in (limit.cur, limit.max))
        try:
            resource.setrlimit(number, values)
        except (OSError, ValueError) as e:
            raise HiberError(f"cannot set rlimit {number} to {values}: {e} "
                             "(raising a hard limit needs CAP_SYS_RESOURCE)") from None


def queue_signals(remote, scratch, pid, tid, queue, shared, timer_ids=frozenset()):
    """Queue dumped siginfos again: rt_sigqueueinfo from the task to itself
    may carry any si_code (the kernel only refuses it towards others). The
    signal of one of the process's POSIX timers (``timer_ids``) is left to
    that timer, which expires at once (timers.restore_posix_timers)."""
    for s in queue.signals:
        if timers.fired_timer(s.siginfo) in timer_ids:
            continue
        signo = struct.unpack_from("<i", s.siginfo)[0]
        remote.write(scratch, s.siginfo)
        if shared:
            remote.syscall("rt_sigqueueinfo", pid, signo, scratch)
        else:
            remote.syscall("rt_tgsigqueueinfo", pid, tid, signo, scratch)


def restore_task(remote, scratch, pid, core, mm, exe_fd):
    """Per-process state, in an order that keeps each step possible; the
    loginuid and SELinux label before any thread exists (they are inherited,
    and SELinux relabels only a single-threaded process)."""
    tc = core.tc
    creds.restore_loginuid(remote, scratch, pid, tc)
    creds.restore_selinux_label(remote, scratch, pid, core.thread_core.creds)
    restore_mm(remote, scratch, mm, exe_fd)
    if tc.personality:
        remote.syscall("personality", tc.personality)
    restore_sigactions(remote, scratch, tc.sigactions)
    timers.restore_itimers(remote, scratch, tc.timers)
    if tc.child_subreaper:
        remote.syscall("prctl", PR_SET_CHILD_SUBREAPER, 1)
    queue_signals(remote, scratch, pid, pid, tc.signals_s, shared=True,
                  timer_ids=timers.posix_timer_ids(core))
    if tc.HasField("oom_score_adj"):
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(tc.oom_score_adj))
    for bit in range(32):
        if tc.membarrier_registration_mask >> bit & 1:
            remote.syscall("membarrier", 1 << bit, 0, 0)
    mlock.restore_mlockall(remote, tc)  # last: no mapping of the restore's may follow


def restore_thread(remote, scratch, pid, tid, core, timer_ids=frozenset()):
    """Per-thread state; runs inside thread ``tid``. ``timer_ids``: the ids
    of the process's POSIX timers (see queue_signals)."""
    th = core.thread_core
    sas = th.sas
    if sas.ss_flags & SS_DISABLE:
        remote.write(scratch, struct.pack("<QiiQ", 0, SS_DISABLE, 0, 0))
    else:
        remote.write(scratch, struct.pack("<QiiQ", sas.ss_sp, sas.ss_flags, 0, sas.ss_size))
    remote.syscall("sigaltstack", scratch, 0)
    if th.HasField("rseq_entry"):
        r = th.rseq_entry
        remote.syscall("rseq", r.rseq_abi_pointer, r.rseq_abi_size, 0, r.signature)
    remote.syscall("set_tid_address", core.thread_info.clear_tid_addr)
    if th.futex_rla:
        remote.syscall("set_robust_list", th.futex_rla, th.futex_rla_len)
    if th.HasField("comm"):
        remote.write(scratch, th.comm.encode()[:15] + b"\0")
        remote.syscall("prctl", PR_SET_NAME, scratch)
    for tls in core.thread_info.tls:
        if not tls.seg_not_present or tls.base_addr or tls.limit:
            flags = (tls.seg_32bit | tls.contents_l << 1 | tls.contents_h << 2
                     | tls.read_exec_only << 3 | tls.limit_in_pages << 4
                     | tls.seg_not_present << 5 | tls.usable << 6)
            desc = pt.user_desc(tls.entry_number, tls.base_addr, tls.limit, flags)
            pt.ptrace(pt.PTRACE_SET_THREAD_AREA, tid, tls.entry_number, ctypes.addressof(desc))
    queue_signals(remote, scratch, pid, tid, th.signals_p, shared=False, timer_ids=timer_ids)
    # scheduling, CPUs, credentials and seccomp come last (resources/taskstate.py)


def xstate_from_fpregs(current, fp):
    """A full XSAVE area: the thread's current one with the image's values."""
    xs = bytearray(current)
    struct.pack_into("<HHHHQQII", xs, 0, fp.cwd, fp.swd, fp.twd, fp.fop, fp.rip, fp.rdp,
                     fp.mxcsr, fp.mxcsr_mask)
    struct.pack_into("<32I", xs, 32, *list(fp.st_space)[:32])
    struct.pack_into("<64I", xs, 160, *list(fp.xmm_space)[:64])
    if fp.HasField("xsave") and len(xs) > cpu.XSAVE_HEADER_OFFSET:
        x = fp.xsave
        layout = cpu.xstate_layout()
        struct.pack_into("<Q", xs, cpu.XSAVE_HEADER_OFFSET, x.xstate_bv)
        for feature, name, _, fmt in XSAVE_ARRAYS:
            values = list(getattr(x, name))
            if values and feature in layout:
                struct.pack_into(f"<{len(values)}{fmt}", xs, layout[feature][0], *values)
    return bytes(xs)


# Calls the kernel restarts only when no handler runs (-ERESTARTNOHAND);
# the others restart after a handler with SA_RESTART (-ERESTARTSYS).
NO_HANDLER_RESTART = {7, 23, 34, 128, 130, 232, 270, 271, 281, 441}
# poll, select, pause, rt_sigtimedwait, rt_sigsuspend, epoll_wait, pselect6,
# ppoll, epoll_pwait, epoll_pwait2


def _back_into_syscall(regs, pid):
    """Images hold a thread caught in a restartable syscall after the restart
    fixup (spec §2.6): rip on the syscall instruction, rax = orig_rax = the
    call. Resumed like that, a signal already pending runs its handler and
    the call then starts afresh (a pause() would sleep on, where the kernel
    returns EINTR). Put the thread back inside the call instead, with the
    restart code the call uses, and the kernel decides on release exactly as
    it would have: restart, or EINTR after a handler."""
    ip, ax, orig = regs[pt.GPREG["ip"]], regs[pt.GPREG["ax"]], regs[pt.GPREG["orig_ax"]]
    if orig >> 63 or ax != orig:
        return False
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(ip)
            if mem.read(2) != b"\x0f\x05":
                return False
    except OSError:
        return False
    code = ERESTARTNOHAND if orig in NO_HANDLER_RESTART else ERESTARTSYS
    regs[pt.GPREG["ip"]] = ip + 2
    regs[pt.GPREG["ax"]] = (-code) & ((1 << 64) - 1)
    return True


def set_registers(tid, core, sigmask, pid=None):
    """The thread's registers, FPU/vector state and signal mask, as dumped."""
    g = core.thread_info.gpregs
    regs = pt.Regs(*[getattr(g, name) for name in pt.GPREG_NAMES])
    if not _back_into_syscall(regs, pid or tid):
        # no restart logic may touch rip/rax on the way out
        regs[pt.GPREG["orig_ax"]] = (1 << 64) - 1
    current = pt.get_regset(tid, pt.NT_X86_XSTATE, MAX_XSTATE)
    pt.set_regset(tid, pt.NT_X86_XSTATE, xstate_from_fpregs(current, core.thread_info.fpregs))
    pt.set_regs(tid, regs)
    pt.set_sigmask(tid, sigmask)
