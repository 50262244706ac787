"""Cgroups: the cgroups every task and thread of the tree lives in, and the
directories and properties of those hierarchies (cgroup.img, as CRIU 4.2
writes it; criu's --manage-cgroups modes, --cgroup-root, --cgroup-yard,
--cgroup-dump-controller).

    hierarchies.py  reading a cgroup file, reaching a hierarchy, what CRIU saves
    dumping.py      the sets and the directories, at dump
    restoring.py    directories made, tasks moved, properties written back
"""

from .dumping import CgroupDump  # noqa: F401
from .hierarchies import CgroupError  # noqa: F401
from .restoring import MODES, CgroupRestore  # noqa: F401
