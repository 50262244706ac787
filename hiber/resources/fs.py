"""cwd, root and umask: fs-PID.img (spec §2.14). cwd and root are REG
entries of files.img; the stub goes there before hiber takes it over."""

import os

from ..images.messages import classes


def dump_fs(pid, table, umask):
    cwd = table.path_entry(pid, f"/proc/{pid}/cwd", "cwd")
    root = table.path_entry(pid, f"/proc/{pid}/root", "root")
    return classes["fs_entry"](cwd_id=cwd, root_id=root, umask=umask)


def enter_fs(files, fs):
    """In the stub: its root, cwd and umask as dumped (``files``: FileImages)."""
    root = files.entry(fs.root_id).reg.name
    cwd = files.entry(fs.cwd_id).reg.name
    # both are host paths (hiber read them from outside any chroot): the
    # cwd first, which a chroot then leaves where it is, as it was dumped
    os.chdir(cwd)
    if root != "/":
        os.chroot(root)
    os.umask(fs.umask)
