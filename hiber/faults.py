"""The one seam through which tests make hiber fail on purpose.

A failure path (the tree let go as it was after a failed dump, every stub
killed after a failed restore) is only trusted once it has been taken. The
tests name a phase in ``Options.fault`` (the command line takes it from
HIBER_FAULT); each phase is one ``fault_point`` call in the sequence. With
no fault set, a fault point does nothing. ``bug:PHASE`` raises an error
hiber did not foresee instead, as a bug would.
"""

from .errors import HiberError


class InjectedFault(HiberError):
    """The failure a test asked for."""


def fault_point(options, phase):
    if options.fault == phase:
        raise InjectedFault(f"failure injected at phase '{phase}' (test)")
    if options.fault == f"bug:{phase}":
        raise RuntimeError(f"bug injected at phase '{phase}' (test)")
