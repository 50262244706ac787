"""Threads and tasks: core-TID.img (registers, FPU, TLS, signals, timers,
rlimits, credentials, rseq, ...), spec §2.3-§2.10.

Per-thread facts come from ptrace and /proc; what only the task itself can
tell (sigactions, sigaltstack, itimers, POSIX timer values, prctl values)
comes from syscalls injected into it.
"""

import logging
import struct

from ..images.messages import classes
from ..kernel import cpu, proc
from ..kernel import ptrace as pt
from ..kernel.sys import get_robust_list, sched_getparam, sched_getscheduler

log = logging.getLogger(__name__)

C = classes

TASK_ALIVE, TASK_DEAD, TASK_STOPPED = 1, 2, 3
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
EINTR = 4
SIGKILL, SIGSTOP = 9, 19
RLIMIT_COUNT = 16

# prctl options
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_GET_SECUREBITS = 27
PR_GET_CHILD_SUBREAPER = 37
PR_GET_TID_ADDRESS = 40
PR_GET_THP_DISABLE = 42
MAX_XSTATE = 1 << 14


def gpregs_after_restart_fixup(regs):
    """user_x86_regs_entry, with the syscall-restart fixup CRIU stores (§2.6).

    A thread stopped inside an interrupted syscall shows rax = -ERESTART*;
    images hold the registers as the kernel would leave them to run on:
    restartable calls point back at the syscall instruction with rax =
    the syscall number, RESTART_RESTARTBLOCK ones return -EINTR.
    """
    values = {name: regs[i] for i, name in enumerate(pt.GPREG_NAMES)}
    ax = values["ax"] - (1 << 64) if values["ax"] >> 63 else values["ax"]
    if values["orig_ax"] >> 63 == 0:  # stopped in a syscall
        if -ax in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND):
            values["ax"] = values["orig_ax"]
            values["ip"] -= 2
        elif -ax == ERESTART_RESTARTBLOCK:
            values["ax"] = (-EINTR) & ((1 << 64) - 1)
    return C["user_x86_regs_entry"](mode=1, **values)


def _words(data, offset, count, fmt):
    size = struct.calcsize(fmt)
    return list(struct.unpack_from(f"<{count}{fmt}", data, offset)) if \
        offset + count * size <= len(data) else [0] * count


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
    arrays = [(cpu.XFEATURE_YMM, "ymmh_space", 64, "I"),
              (cpu.XFEATURE_BNDREGS, "bndreg_state", 8, "Q"),
              (cpu.XFEATURE_BNDCSR, "bndcsr_state", 8, "Q"),
              (cpu.XFEATURE_OPMASK, "opmask_reg", 8, "Q"),
              (cpu.XFEATURE_ZMM_HI256, "zmm_upper", 64, "Q"),
              (cpu.XFEATURE_HI16_ZMM, "hi16_zmm", 128, "Q"),
              (cpu.XFEATURE_PKRU, "pkru", 2, "I")]
    for feature, name, count, fmt in arrays:
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


def _cap_words(hex_text):
    value = int(hex_text, 16)
    return [value & 0xffffffff, value >> 32]


def creds_of(pid, tid, remote):
    s = proc.status(pid, tid)
    uid, euid, suid, fsuid = (int(x) for x in s["Uid"].split())
    gid, egid, sgid, fsgid = (int(x) for x in s["Gid"].split())
    creds = C["creds_entry"](
        uid=uid, gid=gid, euid=euid, egid=egid, suid=suid, sgid=sgid, fsuid=fsuid,
        fsgid=fsgid, cap_inh=_cap_words(s["CapInh"]), cap_prm=_cap_words(s["CapPrm"]),
        cap_eff=_cap_words(s["CapEff"]), cap_bnd=_cap_words(s["CapBnd"]),
        secbits=remote.syscall("prctl", PR_GET_SECUREBITS),
        groups=[int(g) for g in s.get("Groups", "").split()],
        cap_amb=_cap_words(s.get("CapAmb", "0")))
    if int(s.get("NoNewPrivs", "0")):
        creds.no_new_privs = 1
    return creds


def _queue(siginfos):
    q = C["signal_queue_entry"]()
    for raw in siginfos:
        q.signals.add(siginfo=raw)
    return q


def thread_core(pid, tid, remote, is_leader, scratch):
    """thread_core_entry of one thread; ``remote`` runs inside that thread."""
    head, length = get_robust_list(tid)
    s = proc.stat(pid, tid)
    tc = C["thread_core_entry"](futex_rla=head, futex_rla_len=length, sched_nice=s.nice)
    policy = sched_getscheduler(tid)
    tc.sched_policy = policy & 0xff
    if policy in (1, 2):  # SCHED_FIFO, SCHED_RR
        tc.sched_prio = sched_getparam(tid)
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
    tc.creds.CopyFrom(creds_of(pid, tid, remote))
    seccomp_mode = int(proc.status(pid, tid).get("Seccomp", "0"))
    if seccomp_mode:
        tc.seccomp_mode = seccomp_mode
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
    return C["thread_info_x86"](clear_tid_addr=clear_tid,
                                gpregs=gpregs_after_restart_fixup(regs),
                                fpregs=fpregs_from_xstate(xstate), tls=tls_entries(tid))


def sigactions(remote, scratch):
    """62 sa_entry: signals 1..64 without SIGKILL and SIGSTOP (§2.7)."""
    out = []
    for sig in range(1, 65):
        if sig in (SIGKILL, SIGSTOP):
            continue
        remote.syscall("rt_sigaction", sig, 0, scratch, 8)
        handler, flags, restorer, mask = struct.unpack("<QQQQ", remote.read(scratch, 32))
        out.append(C["sa_entry"](sigaction=handler, flags=flags, restorer=restorer, mask=mask,
                                 compat_sigaction=False))
    return out


def itimers(remote, scratch):
    timers = []
    for which in (0, 1, 2):  # ITIMER_REAL, VIRTUAL, PROF
        remote.syscall("getitimer", which, scratch)
        isec, iusec, vsec, vusec = struct.unpack("<qqqq", remote.read(scratch, 32))
        timers.append(C["itimer_entry"](isec=isec, iusec=iusec, vsec=vsec, vusec=vusec))
    return timers


def posix_timers(pid, remote, scratch):
    """Every POSIX timer: /proc/PID/timers has ids, signal, clock; the values
    come from timer_gettime() inside the task (kernel-facts)."""
    out = []
    timers = []  # one dict of "key: value" lines per timer, each opened by "ID:"
    for line in proc.read_text(pid, "timers").splitlines():
        key, _, value = line.partition(": ")
        if key == "ID":
            timers.append({})
        timers[-1][key] = value
    notify_kinds = {"signal": 0, "none": 1, "thread": 2}
    for fields in timers:
        timer_id = int(fields["ID"])
        signo, sival = fields["signal"].split("/")
        notify, _, target = fields["notify"].partition("/")
        clock = int(fields["ClockID"])
        remote.syscall("timer_gettime", timer_id, scratch)
        isec, insec, vsec, vnsec = struct.unpack("<qqqq", remote.read(scratch, 32))
        overrun = remote.syscall("timer_getoverrun", timer_id)
        entry = C["posix_timer_entry"](
            it_id=timer_id, clock_id=clock, si_signo=int(signo),
            it_sigev_notify=notify_kinds.get(notify, 0), sival_ptr=int(sival, 16),
            overrun=overrun, isec=isec, insec=insec, vsec=vsec, vnsec=vnsec)
        if target.startswith("tid."):
            entry.it_sigev_notify = 4  # SIGEV_THREAD_ID
            entry.notify_thread_id = int(target[4:])
        out.append(entry)
    return out


def task_core(pid, frozen, remote, scratch):
    """task_core_entry of a live process (the leader's core.tc)."""
    s = proc.stat(pid)
    tc = C["task_core_entry"](
        task_state=TASK_STOPPED if frozen.stopped else TASK_ALIVE, exit_code=0,
        personality=int(proc.read_text(pid, "personality").strip(), 16), flags=s.flags,
        blk_sigset=remote.saved_sigmask, comm=s.comm)
    real, virt, prof = itimers(remote, scratch)
    tc.timers.real.CopyFrom(real)
    tc.timers.virt.CopyFrom(virt)
    tc.timers.prof.CopyFrom(prof)
    tc.timers.posix.extend(posix_timers(pid, remote, scratch))
    limits = proc.limits(pid)[:RLIMIT_COUNT]
    tc.rlimits.rlimits.extend(C["rlimit_entry"](cur=c, max=m) for c, m in limits)
    tc.signals_s.CopyFrom(_queue(pt.peek_siginfos(pid, shared=True)))
    loginuid = proc.read_int(pid, "loginuid", default=-1)
    if loginuid >= 0:
        tc.loginuid = loginuid
    tc.oom_score_adj = proc.read_int(pid, "oom_score_adj", default=0)
    tc.sigactions.extend(sigactions(remote, scratch))
    remote.syscall("prctl", PR_GET_CHILD_SUBREAPER, scratch)
    tc.child_subreaper = bool(struct.unpack("<i", remote.read(scratch, 4))[0])
    if frozen.stopped:
        tc.stop_signo = frozen.stop_signal or SIGSTOP
    return tc
