"""What a restore refuses, before creating anything, and why.

Each check raises a RestoreError of one line that names the image, PID or
file, and what to do: images of another format, uprobes not promised, a PID
in use, sessions and groups forking cannot rebuild, a file that is gone or
changed size (the kinds table checks each file as its kind requires).
"""

from ..errors import RestoreError
from ..images import vma as V
from ..kernel import proc
from ..resources.files import owners

UPROBES_MESSAGE = ("Images were dumped with --allow-uprobes: make sure the same uprobes are "
                   "active, then restore with --allow-uprobes")


def check_inventory(images, options):
    inventory = images.inventory()
    if inventory.img_version != 2 or not inventory.fdinfo_per_id:
        raise RestoreError(f"{images.path}: image version {inventory.img_version} is not "
                           "supported (hiber reads CRIU's version 2 images)")
    if inventory.allow_uprobes and not options.allow_uprobes:
        raise RestoreError(UPROBES_MESSAGE)


def check_pids_free(tids):
    """Every PID and TID of a process must be free: clone3 takes them back."""
    for tid in tids:
        if proc.exists(tid):
            raise RestoreError(f"PID {tid} is already in use: stop that process (or "
                               "restore in a fresh PID namespace) and try again")


def check_sessions(plan):
    """Sessions and groups restore can rebuild by forking in pre-order."""
    root = plan.root.pstree
    if root.sid != root.pid and not plan.shell_job:
        raise RestoreError(f"PID {root.pid} was not a session leader (its session is "
                           f"{root.sid}): restore it with --shell-job (-j) to put it in "
                           "hiber's session")
    in_tree = {p.pid for p in plan.processes}
    made = {}  # pid -> (sid, pgid) of processes (and helpers) created so far
    for p in plan.processes:
        e = p.pstree
        parent = made.get(e.ppid)
        if parent is not None:
            if e.sid not in (e.pid, parent[0]):
                raise RestoreError(f"PID {e.pid} is in session {e.sid}, neither its own "
                                   f"nor its parent's: restore cannot rebuild that")
            leader = made.get(e.pgid)
            if e.pgid not in (e.pid, parent[1], root.pgid):
                if leader is None and e.pgid not in in_tree:
                    # the group's leader is gone: a helper with its PID,
                    # forked by this process's parent (same session), makes
                    # the group and goes once the parent's children are made
                    if plan.check_pids:
                        check_pids_free([e.pgid])
                    plan.group_helpers.setdefault(e.ppid, []).append(e.pgid)
                    made[e.pgid] = leader = (e.sid, e.pgid)
                if leader is None or leader[0] != e.sid:
                    raise RestoreError(f"PID {e.pid} is in process group {e.pgid}, whose "
                                       "leader is not restored before it in its session")
        made[e.pid] = (e.sid, e.pgid)


def check_files(plan):
    """Every file the images use (fds, mapped files, exe, cwd, root) is in
    files.img and can be restored as its kind requires."""
    used = set()
    for p in plan.live:
        used.update(e.id for e in p.fdinfo)
        used.update(v.shmid for v in p.mm.vmas
                    if v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED))
        used.update((p.mm.exe_file_id, p.fs.cwd_id, p.fs.root_id))
    plan.files.check(used)
    owners.check(plan)
