"""Process-level images: pstree.img, ids-PID.img, inventory.img (spec §2.1,
§2.2, §2.11); seccomp.img is seccomp.py's, timens-N.img ns/time.py's."""

import os
import uuid

from ..images.messages import classes
from ..kernel import proc
from ..kernel.sys import KCMP_FILES, KCMP_FS, KCMP_SIGHAND, KCMP_VM, kcmp

C = classes

# CRIU's discovery order; the counter is shared by all namespace kinds (§1.7)
NAMESPACES = [("pid", "pid_ns_id"), ("net", "net_ns_id"), ("ipc", "ipc_ns_id"),
              ("uts", "uts_ns_id"), ("time", "time_ns_id"), ("mnt", "mnt_ns_id"),
              ("user", "user_ns_id"), ("cgroup", "cgroup_ns_id")]
SHARED_OBJECTS = [("vm_id", KCMP_VM), ("files_id", KCMP_FILES), ("fs_id", KCMP_FS),
                  ("sighand_id", KCMP_SIGHAND)]


class IdAllocator:
    """task_kobj_ids for every process; id 1 of each kind is hiber's own."""

    def __init__(self):
        self._ns_ids = {}          # ns inode -> id
        self._seen = []            # (pid, ids) of processes done so far
        self._next = {name: 2 for name, _ in SHARED_OBJECTS}
        self.root_ids = self._ids_of(os.getpid(), own=True)

    def _ns(self, pid, kind):
        try:
            inode = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except FileNotFoundError:
            return None
        if inode not in self._ns_ids:
            self._ns_ids[inode] = len(self._ns_ids) + 1
        return self._ns_ids[inode]

    def _ids_of(self, pid, own=False):
        ids = C["task_kobj_ids_entry"](vm_id=1, files_id=1, fs_id=1, sighand_id=1)
        if not own:
            for name, kind in SHARED_OBJECTS:
                shared = next((getattr(other, name) for other_pid, other in self._seen
                               if _same(pid, other_pid, kind)), None)
                if shared is None:
                    shared = self._next[name]
                    self._next[name] += 1
                setattr(ids, name, shared)
            self._seen.append((pid, ids))
        for kind, field in NAMESPACES:
            ns_id = self._ns(pid, kind)
            if ns_id is not None:
                setattr(ids, field, ns_id)
        return ids

    def ids(self, pid):
        return self._ids_of(pid)

    def ns_id(self, pid, kind):
        """The id of pid's namespace of this kind (as ids-PID.img will say)."""
        return self._ns(pid, kind)


def _same(pid1, pid2, kind):
    try:
        return kcmp(pid1, pid2, kind) == 0
    except OSError:
        return False


def pstree_entries(tree):
    out = []
    for pid, p in tree.processes.items():
        s = proc.stat(pid)
        ppid = 0 if pid == tree.root else tree.parents[pid]
        out.append(C["pstree_entry"](pid=pid, ppid=ppid, pgid=s.pgrp, sid=s.session,
                                     threads=p.threads or [pid]))
    return out


def lsm_type():
    try:
        active = open("/sys/kernel/security/lsm").read()
    except OSError:
        return 0
    if "selinux" in active and os.path.exists("/sys/fs/selinux/enforce"):
        return 1
    if "apparmor" in active and os.path.exists("/sys/kernel/security/apparmor"):
        try:
            if open("/sys/module/apparmor/parameters/enabled").read().strip() == "Y":
                return 2
        except OSError:
            pass
    return 0


def inventory(root_ids, allow_uprobes):
    inv = C["inventory_entry"](img_version=2, fdinfo_per_id=True, root_ids=root_ids,
                               ns_per_id=True, root_cg_set=1, lsmtype=lsm_type(),
                               network_lock_method=0, dump_criu_run_id=str(uuid.uuid4()))
    inv.plugins_entry.SetInParent()
    if allow_uprobes:
        inv.allow_uprobes = True
    return inv


