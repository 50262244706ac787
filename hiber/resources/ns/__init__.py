"""The namespaces hiber rebuilds for a tree, one module per kind:

    switch.py  entering a namespace for a moment; making a new one
    uts.py     host and domain name (utsns-N.img)
    ipc.py     System V objects and IPC limits (ipcns-*-N.img)
    net.py     links, addresses, routes, rules, sysctls, nftables (netdev, netns...)
    time.py    the clocks, which go on from their dumped values (timens-N.img)

(The cgroup namespace is resources/cgroups', as it is rooted in cgroups.)

A tree may have a namespace of each of these kinds of its own, one for all
its processes (resources/namespaces.py refuses nesting, as criu does).  The
dump reads it from inside; the restore makes it anew before the stubs
exist, and hiber's forking thread is in it while the root stub is forked,
so that the whole tree is born in it."""

import contextlib
import logging
import os

from .. import namespaces
from . import ipc, net, switch, time, uts

log = logging.getLogger(__name__)

# kind -> (module, task_kobj_ids_entry field)
KINDS = {"uts": (uts, "uts_ns_id"), "ipc": (ipc, "ipc_ns_id"), "net": (net, "net_ns_id")}


def dump(images, root_pid, root_ids, next_pages_id):
    """The root task's namespaces that are not hiber's; returns the next
    free pages id (IPC segments take some)."""
    counter = [next_pages_id]

    def pages():
        counter[0] += 1
        return counter[0] - 1

    for kind, (module, field) in KINDS.items():
        if not switch.same_as_hiber(kind, root_pid):
            module.dump(images, root_pid, getattr(root_ids, field), pages)
    return counter[0]


def network_of(pid):
    """hiber's thread in pid's network namespace for the block, when it is
    not hiber's: sock_diag and /proc/net see the sockets of the caller's."""
    if switch.same_as_hiber("net", pid):
        return contextlib.nullcontext()
    return switch.inside_of("net", pid)


class TreeNamespaces:
    """At restore: the namespaces the images describe for the root task."""

    def __init__(self, images, root_ids):
        self.images = images
        self.time_ns_id = root_ids.time_ns_id
        self.wanted = [(kind, module, getattr(root_ids, field))
                       for kind, (module, field) in KINDS.items()
                       if root_ids.HasField(field) and _dumped(images, kind,
                                                               getattr(root_ids, field))]
        self.made = {}  # kind -> descriptor

    def make(self):
        for kind, module, ns_id in self.wanted:
            self.made[kind] = module.make(self.images, ns_id)
            log.info("made the tree's %s namespace (%d)", kind, ns_id)

    @contextlib.contextmanager
    def for_stubs(self):
        with contextlib.ExitStack() as stack:
            for kind, fd in self.made.items():
                stack.enter_context(switch.inside(kind, fd))
            stack.enter_context(time.for_stubs(self.images, self.time_ns_id))
            yield

    def close(self):
        for fd in self.made.values():
            os.close(fd)
        self.made = {}


def _dumped(images, kind, ns_id):
    return images.exists(namespaces.IMAGE_OF[kind], ns_id)
