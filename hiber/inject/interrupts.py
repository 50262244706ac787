"""SIGTERM, SIGHUP, SIGINT and SIGQUIT during a dump: stop at a safe point.

What `timeout`, systemd, an orchestrator or a terminal send must end a dump
cleanly: every task thawed as it was, the log written, one line saying why.
A Python handler that raised at once could land in the middle of one ptrace
exchange (registers set, the thread not yet resumed); so the handler only
notes the signal, and hiber raises DumpInterrupted where nothing is half
done: between two injected syscalls, between two batches of pages, between
two processes being frozen. Signals hiber cannot handle (SIGKILL, the OOM
killer) are safe by construction instead: see remote.py.
"""

import contextlib
import logging
import signal
import threading

from ..errors import HiberError

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


class DumpInterrupted(HiberError):
    def __init__(self, signo):
        self.signo = signo
        super().__init__(f"the dump was interrupted by {signal.Signals(signo).name}; "
                         "every process was let go as it was")


class _Pending:
    signo = None


_pending = _Pending()


def _note(signo, _frame):
    if _pending.signo is None:
        _pending.signo = signo


@contextlib.contextmanager
def deferred():
    """Within the block, the HANDLED signals only mark the dump interrupted
    (check() raises). Outside the main thread Python cannot take signals:
    then nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signo: signal.signal(signo, _note) for signo in HANDLED}
    _pending.signo = None
    try:
        yield
        if _pending.signo is not None:
            log.warning("%s came when the dump had already finished",
                        signal.Signals(_pending.signo).name)
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)
        _pending.signo = None


def deferring(work):
    """``work`` run with the HANDLED signals deferred (see deferred())."""
    def run():
        with deferred():
            return work()
    return run


def check():
    """Raise DumpInterrupted if one of the HANDLED signals came."""
    if _pending.signo is not None:
        raise DumpInterrupted(_pending.signo)


def checked(progress):
    """A progress callback that is also a safe point."""
    def report(n):
        check()
        if progress:
            progress(n)
    return report
