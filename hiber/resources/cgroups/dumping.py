"""The dump half of cgroups: which cgroup set every task and thread lives in
(thread_core.cg_set), and, for the sets other than hiber's own, the
directories of their hierarchies with the properties CRIU saves, so that a
restore can make them again (cgroup.img).

Set 1 is hiber's own (inventory.root_cg_set): a tree living where hiber does
needs no cgroup.img at all, and comes back wherever the restoring hiber is.

A tree with a cgroup namespace of its own (one for all its tasks: see
resources/namespaces.py) sees its cgroups from that namespace's root: each
member then carries, in cgns_prefix, how much of its path (as hiber sees it)
is that root, learnt by reading the root task's cgroup file from inside its
namespace."""

import errno
import os
from dataclasses import dataclass, field

from ...images.messages import classes as C
from ..ns import switch
from . import hierarchies as h

LLONG_MAX = (1 << 63) - 1


@dataclass
class Dir:
    path: str                     # in its hierarchy: "/" or "/a/b"
    perms: tuple                  # (st_mode, uid, gid)
    properties: list = field(default_factory=list)  # (name, value, perms)
    children: list = field(default_factory=list)


@dataclass
class Controller:
    cnames: list
    heads: list = field(default_factory=list)
    is_threaded: bool = False


class CgroupDump:
    def __init__(self, options, root_pid):
        self.collect_dirs = options.manage_cgroups != "ignore"
        self.only = tuple(options.cgroup_dump_controllers)
        self.roots = tuple(options.cgroup_roots)
        self.yard = options.cgroup_yard
        self.controllers = [Controller(c) for c in h.own_hierarchies(self.only)]
        self.sets = {}  # members ((name, path, cgns_prefix), ...) -> id, in the order met
        self.own_set = self._set(self._members("/proc/self/cgroup", {}), collect=False)
        self.root_set = None
        self.prefixes = namespace_roots(root_pid, self.only)  # name -> cgns_prefix

    def _members(self, path, prefixes):
        return tuple((name, where, prefixes.get(name, 0))
                     for name, where in h.read_memberships(path, self.only))

    def set_of(self, pid, tid):
        """The id of the cgroup set thread tid of pid lives in; the first
        asked for is the root task's."""
        members = self._members(f"/proc/{pid}/task/{tid}/cgroup", self.prefixes)
        found = self._set(members, collect=True)
        if self.root_set is None:
            self.root_set = found
        return found

    def _set(self, members, collect):
        if members not in self.sets:
            self.sets[members] = len(self.sets) + 1
            if collect:
                for name, path, _ in members:
                    self._collect(name, path)
        return self.sets[members]

    def _controller(self, name):
        for c in self.controllers:
            if h.holds(c.cnames, name):
                return c
        if not name.startswith(h.NAMED):
            raise h.CgroupError(f"cgroup controller {name} is not mounted for hiber: "
                                "the dumped task's cgroup cannot be found")
        # a named hierarchy hiber is in too, but keeps no controller list of
        c = Controller([name])
        self.controllers.append(c)
        return c

    def _walk_root(self, name, path):
        for controller, root in self.roots:
            if controller == name:
                return root
        for controller, root in self.roots:
            if controller is None:
                return root
        return path

    def _collect(self, name, path):
        controller = self._controller(name)
        if not self.collect_dirs:
            return
        try:
            fd = h.open_hierarchy(name, self.yard)
        except h.DyingHierarchy:
            if path == "/":
                return  # its root is all it has, and every task is in it
            raise
        try:
            for dirpath, _, _, dfd in os.fwalk(h.relative(self._walk_root(name, path)),
                                               dir_fd=fd):
                rel = os.path.normpath(dirpath)
                where = "/" if rel == "." else "/" + rel
                st = os.fstat(dfd)
                d = Dir(where, (st.st_mode, st.st_uid, st.st_gid))
                if _insert(controller.heads, d):
                    d.properties = _properties(dfd, controller)
        finally:
            os.close(fd)

    def image(self):
        """The cgroup_entry to write, or None when every task is in hiber's set."""
        if self.root_set in (None, self.own_set) and len(self.sets) == 1:
            return None
        entry = C["cgroup_entry"]()
        for members, set_id in self.sets.items():
            if set_id == self.own_set:
                continue
            s = entry.sets.add(id=set_id)
            for name, path, prefix in members:
                member = s.ctls.add(name=name, path=path)
                if prefix:
                    member.cgns_prefix = prefix
        for c in self.controllers:
            ce = entry.controllers.add(cnames=c.cnames, is_threaded=c.is_threaded)
            _dir_entries(ce.dirs, c.heads, None)
        return entry


def namespace_roots(pid, only=()):
    """For a task in a cgroup namespace of its own: per hierarchy, the
    length of the part of its cgroup path (as hiber sees it) that is the
    namespace's root; {} for a task in hiber's cgroup namespace."""
    if os.stat(f"/proc/{pid}/ns/cgroup").st_ino == os.stat("/proc/self/ns/cgroup").st_ino:
        return {}
    outside = dict(h.read_memberships(f"/proc/{pid}/cgroup", only))
    inside = dict(_memberships_seen_from(pid, only))
    prefixes = {}
    for name, path in outside.items():
        seen = inside.get(name)
        if seen is None or seen == path:
            continue  # a namespace made at the hierarchy's root
        tail = seen[1:]
        cut = len(path) - len(tail)
        if not path.endswith(tail) or cut < 1:
            raise h.CgroupError(f"PID {pid}: its cgroup {name}:{seen} (in its namespace) is "
                                f"not the end of {path}")
        if path[cut - 1] == "/":
            cut -= 1
        prefixes[name] = cut
    return prefixes


def _memberships_seen_from(pid, only):
    """/proc/PID/cgroup as a task in pid's cgroup namespace reads it: paths
    are shown from the reader's namespace root (cgroup_namespaces(7))."""
    def read():
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    try:
        text = switch.seen_from("cgroup", pid, read)
    except OSError:
        raise h.CgroupError(f"PID {pid}: cannot read its cgroups from inside its cgroup "
                            "namespace") from None
    found = []
    for line in text.splitlines():
        _, names, where = line.split(":", 2)
        if not only or names in only:
            found.append((names, where))
    return found


def _within(path, parent):
    return parent == "/" or path.startswith(parent + "/")


def _insert(dirs, new):
    """Put new in the tree of dirs under its nearest walked ancestor; false
    when it is there already (co-mounted controllers, overlapping sets)."""
    for d in dirs:
        if d.path == new.path:
            return False
        if _within(new.path, d.path):
            return _insert(d.children, new)
    dirs.append(new)
    return True


def _properties(dfd, controller):
    names = [p for c in controller.cnames for p in h.CONTROLLER_PROPERTIES.get(c, ())]
    names += h.GLOBAL_PROPERTIES_V2 if controller.cnames == [h.V2] else h.GLOBAL_PROPERTIES_V1
    found = []
    for name in names:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue  # a property this kernel (or this controller's level) lacks
            raise
        try:
            st = os.fstat(fd)
            value = "" if name in h.MEMBERSHIP_FILES else _value(name, os.read(fd, 1023))
        finally:
            os.close(fd)
        if (name == "cgroup.type" and value == "threaded") or name == "tasks":
            controller.is_threaded = True
        found.append((name, value, (st.st_mode, st.st_uid, st.st_gid)))
    return found


def _value(name, raw):
    text = raw.decode(errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    if name == "memory.oom_control":
        # "oom_kill_disable N\nunder_oom M...": only N can be written back
        return text.split("\n", 1)[0].split()[-1]
    number = text.strip().split("\n", 1)[0]
    if number.lstrip("+-").isdigit() and int(number) >= LLONG_MAX:
        return "-1"  # "unlimited" as the kernel shows it overflows a long long
    return text


def _dir_entries(repeated, dirs, parent):
    for d in dirs:
        if parent is None:
            name = d.path[1:]
        elif parent.path == "/":
            name = d.path[1:]
        else:
            name = d.path[len(parent.path) + 1:]
        e = repeated.add(dir_name=name)
        mode, uid, gid = d.perms
        e.dir_perms.mode, e.dir_perms.uid, e.dir_perms.gid = mode, uid, gid
        for prop, value, (pmode, puid, pgid) in d.properties:
            e.properties.add(name=prop, value=value).perms.CopyFrom(
                C["cgroup_perms"](mode=pmode, uid=puid, gid=pgid))
        _dir_entries(e.children, d.children, d)
