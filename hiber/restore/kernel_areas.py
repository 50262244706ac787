"""The kernel's areas of a restored task: its vdso and vvar (how, in
resources/vdso.py; when, here).

    decide   at plan time, per process: the kernel's vdso moved in place, or
             the dumped one kept as a proxy (another kernel, or forced)
    park     before the image's memory is made: the stub's vvar and vdso go
             where neither the stub nor the image has anything
    place    once the memory is made: moved where the image had them, or
             the proxy built in front of them
"""

from ..errors import RestoreError
from ..images.imagedir import ImageDir
from ..options import Options
from ..resources import vdso
from .plan import Plan


def decide(plan, force_proxy=False):
    runtime = vdso.runtime_layout()
    for p in plan.live:
        p.vdso_plan = _decision(p, runtime, force_proxy)


def _decision(p, runtime, force_proxy):
    """Whether this process's vdso can come back, in place or by proxy."""
    try:
        return vdso.plan(p.pid, p.vdso_image, runtime, force_proxy)
    except ValueError as e:
        raise RestoreError(f"PID {p.pid}: {e}") from None


def plan_vdso(images_dir, force_proxy=False):
    """What restore would do with each process's vdso, creating nothing."""
    plan = Plan(ImageDir(images_dir), Options(allow_uprobes=True, shell_job=True),
                check_pids=False, check_files=False)
    runtime = vdso.runtime_layout()
    return [_decision(p, runtime, force_proxy) for p in plan.live]


def park(task, areas, occupied):
    return vdso.park(task, areas, occupied)


def place(task, p, parked):
    vdso.place(task, p.vdso_plan, parked, p.pages.read_range)
