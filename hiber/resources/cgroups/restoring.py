"""The restore half of cgroups, in criu's --manage-cgroups modes:

    ignore  nothing: the tree stays in the cgroups hiber runs in
    none    every directory must exist; only membership is given back
    props   every directory must exist; their properties are written back
    soft    missing directories are made (mode, owner, properties); existing
            ones are used as they are (the default, as with criu)
    full    missing ones are made, existing ones get the dumped properties
    strict  as full, but a directory that exists already is an error

The order matters to the kernel: a directory is made with its "special"
properties before anything enters it (hierarchies.SPECIAL_PROPERTIES); each
process is moved in before its memory is rebuilt, so its pages are charged
where they were; threads in threaded controllers follow once they exist; the
other properties are written last, when the tasks are in place (pids.max
below the number of tasks already in, for one, would refuse them).
A failed restore removes the directories it made."""

import contextlib
import errno
import logging
import os
import signal

from ...kernel import sys

from . import hierarchies as h

log = logging.getLogger(__name__)

MODES = ("ignore", "none", "props", "soft", "full", "strict")


class CgroupRestore:
    def __init__(self, images, options):
        found = images.read_optional("CGROUP")
        entry = found[0] if found else None
        self.mode = options.manage_cgroups
        self.yard = options.cgroup_yard
        self.sets = {s.id: s for s in entry.sets} if entry else {}
        self.controllers = list(entry.controllers) if entry else []
        self.root_set = images.inventory().root_cg_set or 0
        self.fds = []          # per controller: its hierarchy's root fd
        self.made = []         # (fd, path) of directories made, in order
        self.kept_as_is = set()  # (fd, path) of directories whose properties stay as found
        self.freezer = None
        if self.sets:
            _rewrite_roots(self.controllers, self.sets.values(), options.cgroup_roots)

    @property
    def active(self):
        return bool(self.sets) and self.mode != "ignore"

    # -- before the stubs -------------------------------------------------

    def prepare(self):
        """Reach every hierarchy and make the directories the mode asks for."""
        if not self.active:
            return
        for c in self.controllers:
            try:
                fd = h.open_hierarchy(",".join(c.cnames), self.yard)
            except h.DyingHierarchy:
                if any(d.dir_name for d in c.dirs):
                    raise
                self.fds.append(None)  # only its root, where every task is already
                continue
            self.fds.append(fd)
            self._dirs(c, fd, "", c.dirs)

    def _dirs(self, controller, fd, base, dirs):
        for e in dirs:
            path = _join(base, e.dir_name)
            where = f"{_name(controller)}:/{path if path != '.' else ''}"
            if _isdir(path, fd):
                if self.mode == "strict":
                    raise h.CgroupError(f"cgroup {where} exists already "
                                        "(--manage-cgroups=strict)")
                if self.mode in ("soft", "none"):
                    self.kept_as_is.add((fd, path))
                if self.mode != "none":
                    _set_perms(fd, path, e.dir_perms if e.HasField("dir_perms") else None)
            else:
                if self.mode in ("none", "props"):
                    raise h.CgroupError(f"cgroup {where} does not exist (--manage-cgroups="
                                        f"{self.mode} makes none: create it, or use soft)")
                self._make(fd, path, where)
                _set_perms(fd, path, e.dir_perms if e.HasField("dir_perms") else None)
                for p in e.properties:
                    if p.name in h.SPECIAL_PROPERTIES:
                        _write_special(fd, path, p)
            self._dirs(controller, fd, path, e.children)

    def _make(self, fd, path, where):
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            step = "/".join(parts[:i])
            try:
                os.mkdir(step, 0o755, dir_fd=fd)
            except FileExistsError:
                continue
            except OSError as e:
                raise h.CgroupError(f"cannot make cgroup {where}: {e.strerror}") from None
            self.made.append((fd, step))
            log.info("made cgroup %s", where)

    @contextlib.contextmanager
    def namespace_for_stubs(self, plan):
        """While the root stub is forked, hiber is in the tree's cgroup
        namespace, if it had one: the stubs are born in it, as criu's root
        task unshares it before forking the rest.  Its root in each
        hierarchy is the part of the root task's paths cgns_prefix says."""
        roots = self._namespace_roots(plan)
        if not roots:
            yield
            return
        ns = self._make_namespace(roots)
        own = os.open("/proc/self/ns/cgroup", os.O_RDONLY | os.O_CLOEXEC)
        try:
            sys.setns(ns, sys.CLONE_NEWCGROUP)
            try:
                yield
            finally:
                sys.setns(own, sys.CLONE_NEWCGROUP)
        finally:
            os.close(own)
            os.close(ns)

    def _namespace_roots(self, plan):
        if not self.active:
            return []
        s = self.sets.get(_set_id(plan.root.core))
        if s is None:
            return []
        return [(m.name, m.path[:m.cgns_prefix]) for m in s.ctls
                if m.HasField("cgns_prefix") and m.cgns_prefix]

    def _make_namespace(self, roots):
        """A cgroup namespace whose root is `roots`: made by a helper that
        moves into those cgroups and unshares; it stays with the descriptor."""
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.close(ready_r)
                for name, path in roots:
                    self._write_membership(os.getpid(), name, path, "cgroup.procs")
                sys.unshare(sys.CLONE_NEWCGROUP)
                os.write(ready_w, b"1")
                signal.pause()
            finally:
                os._exit(1)
        os.close(ready_w)
        try:
            made = os.read(ready_r, 1) == b"1"
            if not made:
                raise h.CgroupError("cannot make the tree's cgroup namespace rooted at "
                                    + ", ".join(f"{n}:{p}" for n, p in roots))
            return os.open(f"/proc/{child}/ns/cgroup", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(ready_r)
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)

    # -- once the stubs exist ---------------------------------------------

    def place_processes(self, plan):
        """Move every process whose set differs from its parent's (the
        root's: from the set hiber was in at the dump) into its cgroups."""
        if not self.active:
            return

        def visit(p, parent_set, parent_target):
            own = _set_id(p.core) or parent_set
            target = parent_target if own == parent_set else own
            if target and not p.zombie:
                self._move(p.pid, target, "cgroup.procs", threads_only=False)
            for child in p.children:
                visit(child, own, target)

        visit(plan.root, self.root_set, None)

    def place_threads(self, plan):
        """Threads whose set differs from their process's: each threaded
        controller gets them one by one (v1 tasks, cgroup2 cgroup.threads)."""
        if not self.active:
            return
        for p in plan.live:
            own = _set_id(p.core)
            for tid, core in p.thread_cores.items():
                mine = _set_id(core)
                if mine and mine != own:
                    self._move(tid, mine, None, threads_only=True)

    def _move(self, pid, set_id, membership, threads_only):
        s = self.sets.get(set_id)
        if s is None:
            raise h.CgroupError(f"core of PID {pid}: cgroup set {set_id} is not in cgroup.img")
        for member in s.ctls:
            _, c = self._controller(member.name, pid)
            if threads_only:
                if not c.is_threaded:
                    continue  # the whole process is there already
                membership = "cgroup.threads" if list(c.cnames) == [h.V2] else "tasks"
            self._write_membership(pid, member.name, member.path, membership)

    def _write_membership(self, pid, name, path, membership):
        i, _ = self._controller(name, pid)
        if self.fds[i] is None:
            if path.strip("/") == "":
                return  # the root of a hierarchy no one can mount: every task is there
            raise h.CgroupError(f"PID {pid}: cgroup {name}:{path} is in a hierarchy that "
                                "cannot be mounted (being destroyed)")
        try:
            fd = os.open(_join(path.lstrip("/"), membership), os.O_WRONLY | os.O_CLOEXEC,
                         dir_fd=self.fds[i])
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise h.CgroupError(f"PID {pid}: cannot move it into cgroup {name}:{path}: "
                                f"{e.strerror}") from None

    def _controller(self, name, pid):
        for i, c in enumerate(self.controllers):
            if h.holds(list(c.cnames), name):
                return i, c
        raise h.CgroupError(f"PID {pid}: cgroup.img has no hierarchy for {name}")

    # -- when every task is in place --------------------------------------

    def set_properties(self):
        if not self.active:
            return
        for c, fd in zip(self.controllers, self.fds):
            if fd is not None:
                self._properties(fd, "", c.dirs)
        if self.freezer is not None:
            fd, path, prop = self.freezer
            _write(fd, path, prop)

    def _properties(self, fd, base, dirs):
        for e in dirs:
            path = _join(base, e.dir_name)
            # the hierarchy's root is the host's, never written to
            if e.dir_name and (fd, path) not in self.kept_as_is:
                for p in e.properties:
                    if p.name == "freezer.state":
                        self.freezer = (fd, path, p)  # last: it may freeze the tree
                    elif p.name == "net_prio.ifpriomap":
                        _write_lines(fd, path, p, _nonzero_priorities(p.value))
                    elif p.name not in h.SPECIAL_PROPERTIES:
                        _write(fd, path, p)
            self._properties(fd, path, e.children)

    def undo(self):
        """After a failure: the directories this restore made, deepest first."""
        for fd, path in reversed(self.made):
            try:
                os.rmdir(path, dir_fd=fd)
            except OSError as e:
                log.warning("could not remove the cgroup %s it made: %s", path, e.strerror)
        self.made = []

    def close(self):
        for fd in self.fds:
            if fd is not None:
                os.close(fd)
        self.fds = []


def _isdir(path, fd):
    try:
        return os.stat(path, dir_fd=fd).st_mode & 0o170000 == 0o040000
    except FileNotFoundError:
        return False


def _join(base, name):
    return os.path.normpath(f"{base}/{name}".strip("/") or ".")


def _name(controller):
    return ",".join(controller.cnames) or "cgroup2"


def _set_id(core):
    if core.HasField("thread_core") and core.thread_core.HasField("cg_set"):
        return core.thread_core.cg_set
    if core.HasField("tc") and core.tc.HasField("cg_set"):
        return core.tc.cg_set
    return 0


def _set_perms(fd, path, perms):
    if perms is None:
        return
    os.chown(path, perms.uid, perms.gid, dir_fd=fd)
    os.chmod(path, perms.mode & 0o7777, dir_fd=fd)


def _open_property(fd, path, prop, flags=os.O_WRONLY):
    name = _join(path, prop.name)
    try:
        pfd = os.open(name, flags | os.O_CLOEXEC, dir_fd=fd)
    except OSError as e:
        raise h.CgroupError(f"cgroup property {name}: {e.strerror}") from None
    if prop.HasField("perms"):
        os.fchown(pfd, prop.perms.uid, prop.perms.gid)
        os.fchmod(pfd, prop.perms.mode & 0o7777)
    return pfd


def _write(fd, path, prop):
    if prop.name == "cgroup.subtree_control":
        return _write_subtree_control(fd, path, prop)
    pfd = _open_property(fd, path, prop)
    try:
        if prop.name in h.MEMBERSHIP_FILES:
            return  # only its permissions
        if prop.name == "cgroup.type" and prop.value != "threaded":
            return  # "domain" is what a new cgroup is; the others the kernel derives
        try:
            os.write(pfd, prop.value.encode())
        except OSError as e:
            # cgroup v1 kmem limits are gone from newer kernels (EOPNOTSUPP)
            if not (e.errno == errno.EOPNOTSUPP and prop.name == "memory.kmem.limit_in_bytes"):
                raise h.CgroupError(f"cgroup property {_join(path, prop.name)}: cannot write "
                                    f"{prop.value!r}: {e.strerror}") from None
    finally:
        os.close(pfd)


def _write_lines(fd, path, prop, lines):
    """Properties the kernel parses one line per write()."""
    if not lines:
        return
    pfd = _open_property(fd, path, prop)
    try:
        for line in lines:
            try:
                os.write(pfd, line.encode())
            except OSError as e:
                if prop.name == "net_prio.ifpriomap":
                    log.warning("%s: %r not written back: %s", prop.name, line, e.strerror)
                else:
                    raise h.CgroupError(f"cgroup property {_join(path, prop.name)}: cannot "
                                        f"write {line!r}: {e.strerror}") from None
    finally:
        os.close(pfd)


def _nonzero_priorities(value):
    # a new cgroup has priority 0 on every interface, and interfaces may differ here
    return [line for line in value.split("\n") if line and int(line.split()[1] or 0)]


def _write_subtree_control(fd, path, prop):
    pfd = _open_property(fd, path, prop, os.O_RDWR)
    try:
        now = os.read(pfd, 1024).decode().split()
        change = [f"-{c}" for c in now] + [f"+{c}" for c in prop.value.split()]
        if change:
            os.write(pfd, " ".join(change).encode())
    except OSError as e:
        raise h.CgroupError(f"{_join(path, prop.name)}: cannot enable {prop.value!r}: "
                            f"{e.strerror}") from None
    finally:
        os.close(pfd)


def _write_special(fd, path, prop):
    """The properties a directory takes only while empty: written at once."""
    if (prop.name, prop.value) in (("memory.swappiness", "60"), ("memory.oom_control", "0")):
        return  # the defaults, which some kernels refuse to be written again
    if prop.name == "devices.list":
        # only the whitelist can be read: deny everything, then allow each line
        deny = _Prop("devices.deny", "a", prop)
        _write(fd, path, deny)
        _write_lines(fd, path, _Prop("devices.allow", None, prop),
                     [line for line in prop.value.split("\n") if line])
        return
    _write(fd, path, prop)


class _Prop:
    """devices.list is written back through devices.deny and devices.allow,
    which are write-only (0200) for the owner of the list."""
    def __init__(self, name, value, like):
        self.name, self.value, self.perms = name, value, like.perms
        self._perms = like.HasField("perms")
        if self._perms:
            self.perms = type(like.perms)(mode=0o200, uid=like.perms.uid, gid=like.perms.gid)

    def HasField(self, name):
        return name == "perms" and self._perms


def _rewrite_roots(controllers, sets, roots):
    """criu --cgroup-root [CONTROLLER:]/PATH at restore: the dumped top
    directories of a hierarchy, and the set paths under them, move to PATH."""
    if not roots:
        return
    for c in controllers:
        new_root = next((r for name, r in roots if name is not None and h.holds(list(c.cnames),
                                                                                 name)), None)
        if new_root is None:
            new_root = next((r for name, r in roots if name is None), None)
        if new_root is None:
            continue
        for d in c.dirs:
            old = d.dir_name
            for s in sets:
                for m in s.ctls:
                    if h.holds(list(c.cnames), m.name) and m.path[1:].startswith(old):
                        m.path = new_root.rstrip("/") + m.path[len(old) + 1:] or "/"
            d.dir_name = new_root
