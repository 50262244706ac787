"""Timers of a task (task_core.timers in core-PID.img): the three itimers
and the POSIX timers, both halves. The values come from getitimer() and
timer_gettime() injected into the task; what /proc/PID/timers shows (id,
signal, notification, clock) completes the POSIX ones.
"""

import struct

from ..errors import HiberError
from ..images.messages import classes
from ..kernel import proc

C = classes

PR_TIMER_CREATE_RESTORE_IDS = 77
SIGEV_NONE, SIGEV_THREAD_ID = 1, 4
SI_TIMER = -2


def dump(pid, remote, scratch):
    """task_timers_entry of a live process (its leader runs ``remote``)."""
    real, virt, prof = itimers(remote, scratch)
    entry = C["task_timers_entry"](real=real, virt=virt, prof=prof)
    entry.posix.extend(posix_timers(pid, remote, scratch))
    return entry


def itimers(remote, scratch):
    """ITIMER_REAL, _VIRTUAL and _PROF, each as getitimer() tells it."""
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
        # CPU-time clocks are negative: glibc turns CLOCK_PROCESS_CPUTIME_ID and
        # CLOCK_THREAD_CPUTIME_ID into the kernel's own encodings (-6, -2) and
        # pthread_getcpuclockid() gives ~TID << 3 | 6; the image keeps the
        # clockid_t's 32 bits as an uint32, as CRIU does (restore passes them
        # back, and the kernel reads clockid_t from the low 32 bits).
        clock = int(fields["ClockID"]) & 0xffffffff
        remote.syscall("timer_gettime", timer_id, scratch)
        isec, insec, vsec, vnsec = struct.unpack("<qqqq", remote.read(scratch, 32))
        overrun = remote.syscall("timer_getoverrun", timer_id)
        entry = C["posix_timer_entry"](
            it_id=timer_id, clock_id=clock, si_signo=int(signo),
            it_sigev_notify=notify_kinds.get(notify, 0), sival_ptr=int(sival, 16),
            overrun=overrun, isec=isec, insec=insec, vsec=vsec, vnsec=vnsec)
        if target.startswith("tid."):
            entry.it_sigev_notify = SIGEV_THREAD_ID
            entry.notify_thread_id = int(target[4:])
        out.append(entry)
    return out


def restore_itimers(remote, scratch, timers):
    for which, t in enumerate((timers.real, timers.virt, timers.prof)):
        vsec, vusec = t.vsec, t.vusec
        if (vsec, vusec) == (0, 0) and (t.isec, t.iusec) != (0, 0):
            vsec, vusec = t.isec, t.iusec  # as CRIU: an expired periodic timer re-arms
        remote.write(scratch, struct.pack("<qqqq", t.isec, t.iusec, vsec, vusec))
        remote.syscall("setitimer", which, scratch, 0)


def posix_timer_ids(core):
    """The ids of a process's POSIX timers (``core`` is its leader's)."""
    return frozenset(t.it_id for t in core.tc.timers.posix)


def fired_timer(siginfo):
    """The id of the POSIX timer whose expiry queued this siginfo, or None:
    the kernel queues it with si_code SI_TIMER and the timer id in si_tid,
    the first field of the union at byte 16."""
    if struct.unpack_from("<i", siginfo, 8)[0] != SI_TIMER:
        return None
    return struct.unpack_from("<i", siginfo, 16)[0]


def restore_posix_timers(remote, scratch, timers, signal_queues):
    """Each timer with its own id: PR_TIMER_CREATE_RESTORE_IDS makes
    timer_create take the id from *timerid (Linux 6.16+); older kernels hand
    out ids in order, so create them in order and check.

    A timer whose signal was pending at the dump (in one of the process's
    ``signal_queues``) expires at once instead, while the task is still
    stopped, so that its own signal is pending again. The kernel queues one
    signal per timer, its own preallocated one, and fills in si_overrun and
    re-arms a periodic timer only when that one is taken
    (__posixtimer_deliver_signal); a copy queued with rt_sigqueueinfo would
    be a second signal beside it, with no overrun count. queue_signals()
    leaves those siginfos out. What is lost: the phase of the next expiry
    within one interval, and the expirations counted before the dump (the
    kernel shows neither); a CPU-time timer fires once the task has run."""
    if not timers:
        return
    pending = {fired_timer(s.siginfo) for queue in signal_queues for s in queue.signals}
    explicit = remote.syscall_raw("prctl", PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0) == 0
    try:
        for t in sorted(timers, key=lambda t: t.it_id):
            notify = t.it_sigev_notify
            tid = t.notify_thread_id if t.HasField("notify_thread_id") else 0
            sigevent = struct.pack("<Qiii", t.sival_ptr, t.si_signo, notify, tid).ljust(64, b"\0")
            remote.write(scratch, sigevent)
            remote.write(scratch + 64, struct.pack("<i", t.it_id))
            remote.syscall("timer_create", t.clock_id, scratch, scratch + 64)
            got = struct.unpack("<i", remote.read(scratch + 64, 4))[0]
            if got != t.it_id:
                raise HiberError(f"PID {remote.pid}: POSIX timer {t.it_id} came back as "
                                 f"{got}; this kernel cannot restore timer ids")
            vsec, vnsec = t.vsec, t.vnsec
            if (vsec, vnsec) == (0, 0) and (t.isec, t.insec) != (0, 0):
                vsec, vnsec = t.isec, t.insec
            if t.it_id in pending and notify != SIGEV_NONE:
                vsec, vnsec = 0, 1
            remote.write(scratch, struct.pack("<qqqq", t.isec, t.insec, vsec, vnsec))
            remote.syscall("timer_settime", t.it_id, 0, scratch, 0)
    finally:
        if explicit:
            remote.syscall("prctl", PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0)
