"""Scheduling of each thread: policy with SCHED_RESET_ON_FORK, real-time
priority and nice (thread_core sched_*, spec §2.5), and the CPUs it may
run on (thread_core cpu_affinity, hiber's own field: CRIU 4.2 keeps none).

All of it is read and set from hiber's side: sched_getscheduler,
setpriority and sched_setaffinity take a TID, and hiber's CAP_SYS_NICE
allows what the thread's own credentials may not (a negative nice, a
real-time policy). It is set last, just before the threads run: a stub
under SCHED_IDLE would crawl through the restore, and RemoteTask pins a
thread to one CPU while it injects calls.

CPU affinity: only a restricted set is written (not every CPU online at
dump time), so a process that never chose its CPUs runs anywhere after a
restore on any machine. A restricted set naming CPUs this machine does not
have online is refused: the kernel would silently run the thread on the
remaining ones, and a thread pinned for isolation or locality would lose
what it was pinned for. (CRIU's unmerged affinity patches refused a CPU
count mismatch the same way; hiber names the thread and the CPUs.)
"""

import os

from ..errors import HiberError
from ..kernel.sys import sched_getparam, sched_getscheduler

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
SCHED_RESET_ON_FORK = 0x40000000
POLICY_NAMES = {SCHED_OTHER: "SCHED_OTHER", SCHED_FIFO: "SCHED_FIFO", SCHED_RR: "SCHED_RR",
                SCHED_BATCH: "SCHED_BATCH", SCHED_IDLE: "SCHED_IDLE",
                SCHED_DEADLINE: "SCHED_DEADLINE"}
REAL_TIME = (SCHED_FIFO, SCHED_RR)


class SchedError(HiberError):
    pass


def _cpu_file(name):
    """A CPU list of /sys/devices/system/cpu ("0-3,8")."""
    cpus = set()
    with open(f"/sys/devices/system/cpu/{name}") as f:
        for part in f.read().strip().split(","):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def online_cpus():
    return _cpu_file("online")


def cpu_list(cpus):
    """"0-3,8" for {0, 1, 2, 3, 8}."""
    runs = []
    for cpu in sorted(cpus):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# ---- dump --------------------------------------------------------------------

def dump_thread(pid, tid, thread_core):
    """Policy (the reset-on-fork flag kept in it, as CRIU does), priority
    for the real-time policies, and nice, which the kernel keeps for them too."""
    policy = sched_getscheduler(tid)
    base = policy & ~SCHED_RESET_ON_FORK
    if base not in POLICY_NAMES or base == SCHED_DEADLINE:
        raise SchedError(f"TID {tid} of PID {pid} runs under "
                         f"{POLICY_NAMES.get(base, f'scheduling policy {base}')}, whose "
                         "parameters CRIU's image format cannot hold: move it to another "
                         "policy (chrt -p) before dumping")
    thread_core.sched_policy = policy
    if base in REAL_TIME:
        thread_core.sched_prio = sched_getparam(tid)
    thread_core.sched_nice = os.getpriority(os.PRIO_PROCESS, tid)


def dump_affinity(tid, thread_core, online):
    """cpu_affinity, when the thread may not run on every CPU online."""
    allowed = os.sched_getaffinity(tid)
    if not online <= allowed:
        thread_core.cpu_affinity.extend(sorted(allowed))


# ---- restore -----------------------------------------------------------------

def check_thread(tid, thread_core, online):
    """Refuse parameters the kernel would reject (CRIU's validate_sched_parm)
    and CPUs this machine does not have."""
    th = thread_core
    if th.HasField("sched_policy"):
        base = th.sched_policy & ~SCHED_RESET_ON_FORK
        prio = th.sched_prio if th.HasField("sched_prio") else 0
        nice = th.sched_nice if th.HasField("sched_nice") else 0
        valid_prio = 1 <= prio <= 99 if base in REAL_TIME else prio == 0
        if base not in POLICY_NAMES or base == SCHED_DEADLINE or not valid_prio \
                or not -20 <= nice <= 19 or th.sched_policy & ~(SCHED_RESET_ON_FORK | 0xff):
            raise SchedError(f"core-{tid}.img: thread {tid} has scheduling policy "
                             f"0x{th.sched_policy:x}, priority {prio}, nice {nice}, which "
                             "the kernel does not accept: the images are damaged")
    missing = set(th.cpu_affinity) - online
    if missing:
        raise SchedError(f"core-{tid}.img: thread {tid} may run only on CPUs "
                         f"{cpu_list(th.cpu_affinity)}, and CPUs {cpu_list(missing)} are not "
                         f"online here (online: {cpu_list(online)}): restore it on a machine "
                         "with those CPUs, or drop cpu_affinity from its core image "
                         "(hiber decode/encode) to let it run anywhere")


def restore_thread(tid, thread_core):
    """Nice, then policy and priority, then CPUs; from hiber's side."""
    th = thread_core
    policy = th.sched_policy if th.HasField("sched_policy") else SCHED_OTHER
    base = policy & ~SCHED_RESET_ON_FORK
    try:
        os.setpriority(os.PRIO_PROCESS, tid, th.sched_nice if th.HasField("sched_nice") else 0)
        prio = th.sched_prio if base in REAL_TIME else 0
        os.sched_setscheduler(tid, policy, os.sched_param(prio))
    except OSError as e:
        raise SchedError(f"TID {tid}: cannot restore its scheduling ({POLICY_NAMES[base]}"
                         f"{', reset-on-fork' if policy & SCHED_RESET_ON_FORK else ''}, "
                         f"nice {th.sched_nice}): {e.strerror}") from None
    # always: a thread cloned while RemoteTask pinned the leader to one CPU
    # inherited that pin; unrestricted means every CPU there may ever be
    cpus = set(th.cpu_affinity) or _cpu_file("possible")
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError as e:
        if th.cpu_affinity:
            raise SchedError(f"TID {tid}: cannot restrict it to CPUs "
                             f"{cpu_list(th.cpu_affinity)}: {e.strerror} (a cpuset cgroup "
                             "may not allow them)") from None
        raise
