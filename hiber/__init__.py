"""hiber: checkpoint/restore of live Linux process trees, in CRIU's image format.

    import hiber
    result = hiber.dump(pid, "/tmp/images", leave_running=True)
    print(result.pids, result.pages_written, result.times)

Errors are hiber.errors.HiberError (and its subclasses), with a one-line
message that names the pid, fd, file or address concerned.
"""

__version__ = "0.1.0"

# The submodules hiber/dump.py is imported here once, so that the package
# attribute hiber.dump is the function below and stays so (importing a
# submodule later would otherwise rebind the name to the module).
from . import dump as _dump_module  # noqa: E402
from .errors import HiberError, ImageError, UsageError  # noqa: E402,F401

dump = _dump_module.dump
DumpResult = _dump_module.DumpResult
