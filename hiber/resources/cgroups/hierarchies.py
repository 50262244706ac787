"""What the dump and restore halves of cgroups share: reading a task's
cgroup file, telling which hierarchy a name belongs to, reaching a hierarchy,
and the properties CRIU 4.2 saves of each controller."""

import errno
import os

from ...errors import HiberError
from ...kernel import mount

NAMED = "name="
V2 = ""  # cgroup2's line in /proc/PID/cgroup has no controller names ("0::/path")

# the properties saved for each controller (CRIU's built-in list, in the
# order they must be written back: limit_in_bytes before memsw.limit_in_bytes)
CONTROLLER_PROPERTIES = {
    "cpu": ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us",
            "cpu.rt_runtime_us"),
    "memory": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.swappiness",
               "memory.soft_limit_in_bytes", "memory.move_charge_at_immigrate",
               "memory.oom_control", "memory.use_hierarchy", "memory.kmem.limit_in_bytes",
               "memory.kmem.tcp.limit_in_bytes"),
    "cpuset": ("cpuset.cpus", "cpuset.mems", "cpuset.memory_migrate", "cpuset.cpu_exclusive",
               "cpuset.mem_exclusive", "cpuset.mem_hardwall", "cpuset.memory_spread_page",
               "cpuset.memory_spread_slab", "cpuset.sched_load_balance",
               "cpuset.sched_relax_domain_level"),
    "blkio": ("blkio.weight",),
    "net_cls": ("net_cls.classid",),
    "net_prio": ("net_prio.ifpriomap",),
    "pids": ("pids.max",),
    "devices": ("devices.list",),
}
# and of every directory, whatever its controllers (v1, then cgroup2)
GLOBAL_PROPERTIES_V1 = ("cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks")
GLOBAL_PROPERTIES_V2 = ("cgroup.subtree_control", "cgroup.max.descendants", "cgroup.max.depth",
                        "cgroup.freeze", "cgroup.type")
# written as soon as a directory is made, before any task or child enters it:
# the kernel refuses them later (cpuset.cpus/mems: ENOSPC for a task moving
# into an empty cpuset; cgroup.type: only before the cgroup is populated)
SPECIAL_PROPERTIES = ("cpuset.cpus", "cpuset.mems", "devices.list",
                      "memory.kmem.limit_in_bytes", "memory.swappiness",
                      "memory.oom_control", "memory.use_hierarchy", "cgroup.type")
# membership files: only their permissions are saved and given back
MEMBERSHIP_FILES = ("cgroup.procs", "tasks")


class CgroupError(HiberError):
    pass


class DyingHierarchy(CgroupError):
    """A named v1 hierarchy unmounted with no cgroups left, which the kernel
    keeps (every task is in its root) but lets no one mount again (EBUSY):
    it has nothing but its root, where every task is."""


def read_memberships(path, only=()):
    """(name, path) pairs of /proc/PID/task/TID/cgroup, sorted by name as CRIU
    keeps them; `only` (criu --cgroup-dump-controller) keeps just those."""
    members = []
    with open(path) as f:
        for line in f:
            _, names, where = line.rstrip("\n").split(":", 2)
            if only and names not in only:
                continue
            members.append((names, where))
    return tuple(sorted(members))


def own_hierarchies(only=()):
    """The controller lists of hiber's own hierarchies, named ones aside
    (those join when a task turns out to live in one): [["cpu"], ["memory"],
    ..., [""]] for cgroup2."""
    found = []
    with open("/proc/self/cgroup") as f:  # in the file's order, as CRIU lists them
        lines = [line.split(":", 2)[1] for line in f]
    for names in lines:
        if only and names not in only:
            continue
        real = [n for n in names.split(",") if not n.startswith(NAMED)]
        if real:
            found.append(real)
    return found


def holds(cnames, name):
    """Whether the hierarchy of controllers cnames is the one `name` (a
    /proc/PID/cgroup controllers field) designates: every controller of the
    hierarchy is among name's comma-separated ones; cgroup2 only by ""."""
    if list(cnames) == [V2]:
        return name == V2
    given = name.split(",")
    return bool(cnames) and all(c in given for c in cnames)


def dir_of(cnames):
    """The directory name CRIU gives a hierarchy in its cgroup yard:
    controllers joined by commas, "name=" dropped, cgroup2 as "unified"."""
    return ",".join("unified" if n == V2 else n[len(NAMED):] if n.startswith(NAMED) else n
                    for n in cnames)


def open_hierarchy(name, yard=None):
    """A directory descriptor of the root of the hierarchy `name` designates.
    From a yard (criu --cgroup-yard: a directory with each hierarchy mounted
    in it) when given; otherwise a mount of it attached nowhere, so that no
    one sees hiber's mount and nothing is left behind (kernel/mount.py)."""
    if yard:
        try:
            return os.open(os.path.join(yard, dir_of(name.split(","))),
                           os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise CgroupError(f"--cgroup-yard {yard}: no hierarchy {name} there "
                              f"({e.strerror})") from None
    try:
        if name == V2:
            return mount.detached_mount("cgroup2")
        if name.startswith(NAMED):
            # "none": no controllers, which a hierarchy made anew must say
            return mount.detached_mount("cgroup", flags=["none"],
                                        strings=[("name", name[len(NAMED):])])
        return mount.detached_mount("cgroup", flags=name.split(","))
    except OSError as e:
        kind = DyingHierarchy if e.errno == errno.EBUSY and name.startswith(NAMED) \
            else CgroupError
        raise kind(f"cannot mount the cgroup hierarchy {name or 'cgroup2'}: "
                   f"{e.strerror}") from None


def relative(path):
    """A hierarchy path ("/a/b", "/") as one relative to the hierarchy's
    root descriptor."""
    return path.strip("/") or "."
