"""hiber: checkpoint/restore of live Linux process trees, in CRIU's image format.

    import hiber
    done = hiber.dump(pid, "/tmp/images", leave_running=True)
    hiber.pre_dump(pid, "/tmp/1")                 # copy memory, run on, track writes
    hiber.dump(pid, "/tmp/2", prev_images_dir="../1")   # copies what changed
    back = hiber.restore("/tmp/images", restore_detached=True)
    print(back.pids, back.pages_restored, back.times)

Options are criu's, with ``_`` for ``-`` (leave_running, shell_job,
allow_uprobes, restore_detached, pidfile, ...): as keywords, or as one
``hiber.Options`` object (``hiber.dump(pid, dir, options=opts)``); an unknown
keyword raises hiber.UsageError (also a TypeError) naming it.

Errors are hiber.HiberError (and its subclasses), with a one-line message
that names the pid, fd, file or address concerned.
"""

__version__ = "0.1.0"
# The CRIU release whose images, command line and RPC hiber speaks.  Tools
# that drive criu parse "Version: X.Y" (criu --version) and the RPC version
# call to decide what they may ask for, so they are given this, not ours.
CRIU_VERSION = (4, 2)

# The module hiber/dump.py and the package hiber/restore/ are imported here
# once, so that the package attributes hiber.dump and hiber.restore are the
# functions below and stay so (importing a submodule later would otherwise
# rebind the name to the module). Their modules are still reached by
# "from hiber.restore import x" or "import hiber.restore.fork"; only
# "import hiber.restore.fork as f" trips over the function.
from . import dump as _dump_module  # noqa: E402
from . import restore as _restore_module  # noqa: E402
from .errors import HiberError, ImageError, RestoreError, UsageError  # noqa: E402,F401
from .options import Options  # noqa: E402,F401

dump = _dump_module.dump
pre_dump = _dump_module.pre_dump
DumpResult = _dump_module.DumpResult
restore = _restore_module.restore
RestoreResult = _restore_module.RestoreResult
