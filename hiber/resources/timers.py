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
RESTORE_IDS_OFF, RESTORE_IDS_ON, RESTORE_IDS_GET = 0, 1, 2
CLOCK_MONOTONIC = 1
INT_MAX = (1 << 31) - 1
SIGEV_NONE, SIGEV_THREAD_ID = 1, 4
SI_TIMER = -2


def dump(pid, remote, scratch):
    """task_timers_entry of a live process (its leader runs ``remote``)."""
    real, virt, prof = itimers(remote, scratch)
    entry = C["task_timers_entry"](real=real, virt=virt, prof=prof)
    entry.posix.extend(posix_timers(pid, remote, scratch))
    in_use = {t.it_id for t in entry.posix}
    next_id = next_timer_id(remote, scratch, in_use)
    if next_id is not None and next_id != _next_after_restore(in_use):
        entry.next_posix_timer_id = next_id
    return entry


def _next_after_restore(in_use):
    """The next id a restore that made these timers, by rising id, leaves
    (the kernel's counter goes one past each id requested)."""
    return max(in_use) + 1 if in_use else 0


def _sigevent_none():
    return struct.pack("<Qiii", 0, 0, SIGEV_NONE, 0).ljust(64, b"\0")


def next_timer_id(remote, scratch, in_use):
    """The id the process's next timer_create() would get: one timer is
    made and deleted to learn it (the kernel shows its id counter nowhere),
    then the counter is put back. None on kernels without
    PR_TIMER_CREATE_RESTORE_IDS, which could not put it back, and in a
    process whose seccomp filters forbid these calls: it is not worth the
    risk docs/interrupted-dumps.md describes."""
    if not (remote.filters_allow("timer_create", CLOCK_MONOTONIC, scratch, scratch + 64)
            and remote.filters_allow("timer_delete", 0)):
        return None
    mode = remote.syscall_raw("prctl", PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_GET, 0, 0, 0)
    if mode < 0:
        return None
    try:
        remote.syscall("prctl", PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0)
        remote.write(scratch, _sigevent_none())
        if remote.syscall_raw("timer_create", CLOCK_MONOTONIC, scratch, scratch + 64) < 0:
            return None  # no timer allowed now (RLIMIT_SIGPENDING): nothing moved
        probe = struct.unpack("<i", remote.read(scratch + 64, 4))[0]
        remote.undo_syscall("timer_delete", probe)
        remote.undo_syscall("prctl", PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0)
        set_next_timer_id(remote, scratch, in_use, probe, remote.undo_syscall)
        return probe
    finally:
        remote.undo_syscall("prctl", PR_TIMER_CREATE_RESTORE_IDS, mode, 0, 0, 0)


def set_next_timer_id(remote, scratch, in_use, next_id, call):
    """Make ``next_id`` the id of the process's next timer_create(), with
    PR_TIMER_CREATE_RESTORE_IDS on: a timer made with a requested id moves
    the kernel's counter to one past it, and a plain timer_create() takes
    the first free id from the counter on, wrapping at INT_MAX
    (posix_timer_add). So request (and delete) the highest free id below
    ``next_id``, counting down from it past 0 to INT_MAX; the ids between
    are in use and will be skipped. ``call`` runs a syscall in the task."""
    free = (next_id - 1) & INT_MAX
    while free in in_use:
        free = (free - 1) & INT_MAX
    remote.write(scratch, _sigevent_none())
    remote.write(scratch + 64, struct.pack("<i", free))
    call("timer_create", CLOCK_MONOTONIC, scratch, scratch + 64)
    call("timer_delete", free)


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


def restore_posix_timers(remote, scratch, task_timers, signal_queues):
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
    kernel shows neither); a CPU-time timer fires once the task has run.

    Last, the id the next timer_create() gets, when the image has it and
    the kernel takes requested ids."""
    timers = task_timers.posix
    next_id = task_timers.next_posix_timer_id \
        if task_timers.HasField("next_posix_timer_id") else None
    if not timers and next_id is None:
        return
    pending = {fired_timer(s.siginfo) for queue in signal_queues for s in queue.signals}
    explicit = remote.syscall_raw("prctl", PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON,
                                  0, 0, 0) == 0
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
        if explicit and next_id is not None:
            set_next_timer_id(remote, scratch, {t.it_id for t in timers}, next_id,
                              remote.syscall)
    finally:
        if explicit:
            remote.syscall("prctl", PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0)
