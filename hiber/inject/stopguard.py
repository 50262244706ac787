"""Keep a job-control-stopped process stopped, even if hiber dies.

hiber cannot run syscalls in a process that sits in a group stop (a thread
resumed from it only traps again), so freeze.py ends the stop with SIGCONT
and thaw() sends the stop signal back before letting go. If hiber died in
between, the process would run on when it should be stopped.

The guard is a small process forked from hiber the first time a stopped
process is woken. hiber hands it a pidfd and the stop signal of each such
process; when its socket reaches end-of-file without "done" (hiber died:
the kernel closed hiber's end), the guard sends each one its stop signal.
The guard has a session of its own and ignores the signals hiber handles,
so a signal to hiber's process group spares it. What it cannot survive is
being killed together with hiber (a SIGKILL to a whole cgroup): then a
woken process runs on (docs/interrupted-dumps.md).
"""

import logging
import os
import signal
import socket

log = logging.getLogger(__name__)

WATCH, DONE = b"W", b"D"


class StopGuard:
    def __init__(self):
        self._socket = None
        self._pid = None

    def watch(self, pid, stop_signal):
        """Call before waking ``pid``: from here on, hiber's death stops it."""
        if self._socket is None:
            self._start()
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(self._socket, [WATCH + str(int(stop_signal)).encode()], [pidfd])
        finally:
            os.close(pidfd)

    def release(self):
        """Every watched process is stopped again (or dead): the guard goes."""
        if self._socket is None:
            return
        try:
            self._socket.sendall(DONE)
        except OSError as e:
            log.warning("could not tell the stop guard (PID %d) to go: %s", self._pid, e)
        self._socket.close()
        self._socket = None
        try:
            os.waitpid(self._pid, 0)
        except ChildProcessError:
            pass  # someone else reaped it
        self._pid = None

    def _start(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                _guard(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self._socket, self._pid = ours, pid
        log.debug("stop guard started as PID %d", pid)


def _guard(sock):
    """The guard's whole life: collect pidfds until done or end-of-file."""
    os.setsid()
    for signo in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT,
                  signal.SIGPIPE):
        signal.signal(signo, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # hiber's other files (its log, image files, a caller's pipe) are not
    # the guard's to hold open
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    try:
        # woken by hiber's death, run at once: hiber's files close before
        # the kernel detaches its tracees (do_exit: exit_files, then
        # exit_notify), so a stop signal sent right away is taken before
        # a woken process runs a single instruction of its own
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        pass  # not allowed here: the process may run on for a moment
    watched = []
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 64, 1)
        if message.startswith(WATCH) and fds:
            watched.append((fds[0], int(message[1:])))
        elif message == DONE:
            return
        elif not message:
            break  # hiber is gone
    for pidfd, stop_signal in watched:
        try:
            signal.pidfd_send_signal(pidfd, stop_signal)
        except OSError:
            pass  # exited meanwhile
