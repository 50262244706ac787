"""The restore sequence, as named stages, one module each:

    plan.py          read every image and check it (checks.py): a refusal
                     comes before anything is created
    kernel_areas.py  the vdso: in place or by proxy, decided with the plan
    fork.py          the stubs: every process with its PID, session and
                     group (a helper stands in for a dead group leader);
                     files and shared memory opened once, inherited; private
                     memory a family shares premapped before the fork, so it
                     stays shared copy-on-write (resources/cow.py)
    rebuild.py       each stub, by injected syscalls, becomes its process:
                     memory, kernel areas, mm, signals, timers, threads
                     (threads.py), credentials
    release.py       registers and signal masks, then let them all run

A failure at any stage kills and reaps every stub: nothing half-made is left.
"""

import contextlib
import logging
import time
from dataclasses import dataclass, field

from .. import actions
from ..errors import RestoreError  # noqa: F401 - hiber.restore.RestoreError, as before
from ..images.imagedir import ImageDir
from ..options import build_options
from ..resources import cgroups, locks, ns, taskstate
from ..resources.files import ghost, owners
from ..resources.sockets import inet
from . import kernel_areas, release
from .fork import Subreaper, fork_tree
from .kernel_areas import plan_vdso  # noqa: F401 - what restore would do with each vdso
from .plan import Plan
from .rebuild import rebuild_tree

log = logging.getLogger(__name__)


@dataclass
class RestoreResult:
    pids: list
    pages_restored: int
    images_dir: str
    times: dict = field(default_factory=dict)
    exit_status: int | None = None


@contextlib.contextmanager
def _removed_at_last(ghosts):
    try:
        yield
    finally:
        ghosts.remove()


@contextlib.contextmanager
def _undone_on_failure(cgroup_tree):
    """The cgroups a failed restore made are removed once its stubs are gone."""
    try:
        yield
    except BaseException:
        cgroup_tree.undo()
        raise
    finally:
        cgroup_tree.close()


def restore(images_dir, *, options=None, **given):
    """Restore the tree in images_dir. Returns a RestoreResult.

    Options (hiber.Options, or its fields as keywords): unless
    ``restore_detached`` is false, it returns once the tree runs; otherwise
    it waits for the root to exit and reports its status."""
    options = build_options("restore", options, **given)
    started = time.perf_counter()
    images = ImageDir(images_dir)
    scripts = actions.ActionScripts(options.action_scripts, images.path, options.notify)
    release.refuse_existing_pidfile(options.pidfile)
    locks.check_restore(images, options)
    scripts.run(actions.PRE_RESTORE)
    # cgroups first, as with criu: they are made before anything enters them,
    # and a file the tree had open may live in one of them (the plan checks it)
    cgroup_tree = cgroups.CgroupRestore(images, options)
    with _undone_on_failure(cgroup_tree):
        cgroup_tree.prepare()
        plan = Plan(images, options)                                # 1. read, check
        lock = None
        try:
            # creds, seccomp, scheduling, CPUs, registers: refused here if not restorable
            task_state = taskstate.TaskStatePlan(images, images.inventory(), plan.live)
            kernel_areas.decide(plan, options.force_vdso_proxy)
            log.info("Restoring %d process(es) from %s, root PID %d", len(plan.processes),
                     images.path, plan.root.pid)

            namespaces = ns.TreeNamespaces(images, dict(plan.process_ids)[plan.root.pid])
            lock = inet.restore_lock(plan.files)  # network lock: held until the tree runs
            ghosts = ghost.MadeAgain(images, plan.files)  # files gone since the dump
            with Subreaper(), contextlib.closing(namespaces), _removed_at_last(ghosts):
                namespaces.make()  # UTS, IPC: before the stubs, which are born in them
                ghosts.make()
                forking = time.perf_counter()
                with cgroup_tree.namespace_for_stubs(plan), namespaces.for_stubs():
                    stubs = fork_tree(plan)                             # 2. the stubs
                forking = time.perf_counter() - forking
                try:
                    cgroup_tree.place_processes(plan)  # before their pages are charged
                    pages = rebuild_tree(plan, options)                 # 3. each process
                    cgroup_tree.place_threads(plan)
                    cgroup_tree.set_properties()
                    owners.restore(plan)  # F_SETOWN: once every PID they name exists
                    for p in plan.live:
                        task_state.finish(p)  # creds, seccomp, scheduling, CPUs: last
                    scripts.run(actions.POST_RESTORE, plan.root.pid)    # its failure aborts
                    scripts.run(actions.PRE_RESUME, plan.root.pid, must_succeed=False)
                    # TCP connections out of repair mode, then the network lock off
                    inet.finish_connections(plan, lock)
                    ghosts.remove()  # every stub holds them: gone again, as dumped
                    release.release_tree(plan)                          # 4. let them run
                except BaseException:
                    log.error("Restore failed; removing the processes it had started")
                    stubs.kill()
                    if lock is not None:
                        lock.unlock()  # network lock: off, the connections are lost
                    raise
                stubs.close()
        finally:
            plan.close()  # the merged pages of incremental images
            if lock is not None:
                lock.unlock()  # network lock: off on every way out (quiet when done already)

    elapsed = time.perf_counter() - started
    release.write_stats(images, forking, elapsed, pages)
    release.write_pidfile(options.pidfile, plan.root.pid)
    scripts.run(actions.POST_RESUME, plan.root.pid, must_succeed=False)
    log.info("Restored %d process(es) (%d pages) in %.3f s", len(plan.processes), pages,
             elapsed)
    result = RestoreResult([p.pid for p in plan.processes], pages, images.path,
                           {"forking": round(forking, 6), "restore": round(elapsed, 6)})
    if not options.restore_detached:
        result.exit_status = release.wait_for_root(plan.root.pid)
    return result
