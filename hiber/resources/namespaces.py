"""Which namespaces a tree lives in.

hiber does not checkpoint most namespaces yet (CRIU's utsns-N.img,
mountpoints-N.img...).  A process in namespaces other than hiber's own
would come back in hiber's: another hostname, another view of PIDs, mounts
and network.  So the dump is refused, and so is a restore of images
(CRIU's) whose processes had namespaces of their own.

The exceptions are the kinds hiber rebuilds: the cgroup namespace, which
cgroup.img describes (its root in each hierarchy: resources/cgroups), and
the UTS and IPC namespaces (resources/ns/).  The tree may have one of each
of its own, shared by all its tasks, as with criu, which does not nest them
either.
"""

import os

from ..errors import HiberError
from ..kernel import proc

# what a user loses with each kind, for the one-line refusal
WHAT_IT_HOLDS = {
    "pid": "its view of PIDs",
    "pid_for_children": "the PID namespace its children would be born in",
    "net": "its network devices, addresses and sockets",
    "ipc": "its System V IPC objects and POSIX message queues",
    "uts": "its hostname and domain name",
    "time": "its clock offsets",
    "time_for_children": "the time namespace its children would be born in",
    "mnt": "its mounts",
    "user": "its user and group id mappings",
    "cgroup": "its cgroup root",
}
KINDS = list(WHAT_IT_HOLDS)
# task_kobj_ids_entry fields, in the images (spec §2.2)
IMAGE_FIELDS = {"pid": "pid_ns_id", "net": "net_ns_id", "ipc": "ipc_ns_id",
                "uts": "uts_ns_id", "time": "time_ns_id", "mnt": "mnt_ns_id",
                "user": "user_ns_id", "cgroup": "cgroup_ns_id"}


class ForeignNamespace(HiberError):
    pass


def _ns_inode(path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None  # a kind this kernel lacks, or a process that is gone


def foreign_namespaces(pid):
    """Kinds of namespace in which pid differs from hiber itself.  The
    namespaces its children would be born in are its own but after an
    unshare(CLONE_NEWPID/NEWTIME) with no child yet: those it has to itself
    are no namespaces of its own."""
    if not proc.exists(pid):
        return []
    found = []
    for kind in KINDS:
        theirs = _ns_inode(f"/proc/{pid}/ns/{kind}")
        if theirs in (None, _ns_inode(f"/proc/self/ns/{kind}")):
            continue
        if kind.endswith("_for_children") and \
                theirs == _ns_inode(f"/proc/{pid}/ns/{kind[:-len('_for_children')]}"):
            continue
        found.append(kind)
    return found


# kinds hiber rebuilds (resources/cgroups, resources/ns), and the image that
# describes each such namespace (the cgroup one is in cgroup.img)
REBUILT = ("cgroup", "uts", "ipc", "time", "net")
IMAGE_OF = {"uts": "UTSNS", "ipc": "IPC_VAR", "time": "TIMENS", "net": "NETNS"}


def refuse_foreign_namespaces(pids):
    for kind in REBUILT:
        found = {_ns_inode(f"/proc/{pid}/ns/{kind}") for pid in pids} - {None}
        if len(found) > 1:
            raise ForeignNamespace(
                f"the tree's processes are in {len(found)} different {kind} namespaces: "
                f"hiber, as criu, restores one {kind} namespace for a whole tree")
    for pid in pids:
        kinds = [k for k in foreign_namespaces(pid) if k not in REBUILT]
        if kinds:
            raise ForeignNamespace(
                f"PID {pid} is in its own {'/'.join(kinds)} namespace "
                f"({WHAT_IT_HOLDS[kinds[0]]}): hiber cannot checkpoint namespaces yet, and "
                "restoring it in hiber's would lose that; run hiber inside the same "
                "namespaces (e.g. nsenter --all -t PID), or use criu for this tree")


def refuse_namespaced_images(root_ids, process_ids, images=None):
    """process_ids: (pid, task_kobj_ids_entry) pairs from ids-PID.img.  A
    namespace id other than the inventory's root_ids one means the process
    had a namespace of its own: restore rebuilds those of REBUILT kinds that
    the images describe (one for the whole tree), and refuses the others."""
    for kind in IMAGE_OF:
        field = IMAGE_FIELDS[kind]
        found = {getattr(ids, field) for _, ids in process_ids if ids.HasField(field)}
        if len(found) > 1:
            raise ForeignNamespace(f"the images' processes are in {len(found)} different {kind} "
                                   f"namespaces: hiber restores one {kind} namespace for a "
                                   "whole tree")
    for pid, ids in process_ids:
        for kind, field in IMAGE_FIELDS.items():
            if not (ids.HasField(field) and root_ids.HasField(field)) or \
                    getattr(ids, field) == getattr(root_ids, field):
                continue
            ns_id = getattr(ids, field)
            if kind == "cgroup":
                continue  # cgroup.img says where its root is
            if kind in IMAGE_OF and images is not None:
                image = images.file_path(IMAGE_OF[kind], ns_id)
                if os.path.exists(image):
                    continue
                raise ForeignNamespace(
                    f"ids-{pid}.img: PID {pid} had its own {kind} namespace "
                    f"({WHAT_IT_HOLDS[kind]}), and {os.path.basename(image)}, which "
                    "would describe it, is missing")
            raise ForeignNamespace(
                f"ids-{pid}.img: PID {pid} had its own {kind} namespace "
                f"({WHAT_IT_HOLDS[kind]}): hiber cannot restore namespaces yet")
