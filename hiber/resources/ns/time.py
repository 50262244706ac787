"""Time: a restored tree's CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from
the values they had at the dump, as with criu, instead of jumping by the
time it spent in images (or going back, on a machine up for less long).

The dump keeps both clocks as the tree saw them (timens-N.img of its own
time namespace, or timens-0.img when it shared hiber's); the restore forks
the root stub into a new time namespace whose offsets make them so
(time_namespaces(7): the offsets of a namespace can be set until a process
enters it, and only children enter a namespace made by unshare)."""

import contextlib
import errno
import logging
import os
import time

from ...images.messages import classes as C
from ...kernel import sys
from . import switch

log = logging.getLogger(__name__)

CLOCKS = (("monotonic", time.CLOCK_MONOTONIC), ("boottime", time.CLOCK_BOOTTIME))
NS = 10 ** 9


def _now():
    return {name: time.clock_gettime_ns(clock) for name, clock in CLOCKS}


def dump(images, pid, ns_id):
    """The clocks as the tree sees them; keyed 0 when it is in hiber's time
    namespace, else by its namespace's id."""
    if switch.same_as_hiber("time", pid):
        key, clocks = 0, _now()
    else:
        key, clocks = ns_id, switch.seen_from("time", pid, _now)
    entry = C["timens_entry"]()
    for name, _ in CLOCKS:
        value = getattr(entry, name)
        value.tv_sec, value.tv_nsec = divmod(clocks[name], NS)
    images.write("TIMENS", key, [entry])


def _offsets():
    """This thread's time_for_children namespace's offsets, in ns by clock id."""
    found = {}
    with open("/proc/self/timens_offsets") as f:
        for line in f:
            name, seconds, nanoseconds = line.split()
            found[name] = int(seconds) * NS + int(nanoseconds)
    return found


@contextlib.contextmanager
def for_stubs(images, ns_id):
    """The stubs forked in this block are born in a new time namespace
    whose clocks start where the dumped ones stood."""
    key = ns_id if ns_id and images.exists("TIMENS", ns_id) else 0
    found = images.read_optional("TIMENS", key)
    if not found:
        log.warning("timens-%d.img: the clocks were not dumped; the tree sees hiber's", key)
        yield
        return
    dumped = found[0]
    own = os.open("/proc/thread-self/ns/time_for_children", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sys.unshare(switch.CLONE_NEWTIME)
        try:
            inherited, now = _offsets(), _now()
            lines = []
            for name, clock in CLOCKS:
                stamp = getattr(dumped, name)
                raw = now[name] - inherited.get(name, 0)  # the clock with no offset
                offset = stamp.tv_sec * NS + stamp.tv_nsec - raw
                seconds, nanoseconds = divmod(offset, NS)
                lines.append(f"{clock} {seconds} {nanoseconds}\n")
            with open("/proc/self/timens_offsets", "w") as f:
                for line in lines:  # the kernel takes one clock per write
                    f.write(line)
                    f.flush()
            yield
        finally:
            _back(own)
    finally:
        os.close(own)


def _back(own):
    """Children of hiber's again go to its own time namespace.  Entering a
    time namespace needs a single-threaded process (EUSERS otherwise): a
    hiber with threads leaves its later helpers in the tree's, which only
    shifts their clocks."""
    try:
        sys.setns(own, switch.CLONE_NEWTIME)
    except OSError as e:
        if e.errno != errno.EUSERS:
            raise
        log.warning("hiber has threads: its later helper processes share the tree's clocks")
