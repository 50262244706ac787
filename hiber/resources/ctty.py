"""The controlling terminal of a session, given back in the stub of its
leader: right after setsid() (TIOCSCTTY, before the children fork, so they
inherit it), and the foreground group once the session's groups exist
(TIOCSPGRP), as criu's tty_restore_ctl_terminal does.

The terminal is the pty whose TtyInfoEntry names the session (its sid);
the stub reaches the pty's slave through the master already open in it
(TIOCGPTPEER), so the /dev/pts name is not needed.
"""

import fcntl
import os
import struct

from .files import terminal


def take(files, stub_files, pid):
    """In the stub of session leader ``pid``, after setsid(): make its
    terminal the session's. Returns (slave fd, foreground group) for
    ``give_foreground``, or None when the session had no pty of the tree."""
    infos, _ = files.data(terminal.KIND)
    for tid in sorted(infos):
        info = infos[tid]
        if info.type != terminal.PTY or info.sid != pid:
            continue
        index = info.pty.index
        if terminal.info_id(index, True) not in infos:
            return None  # a shell job's terminal: the session is hiber's, not made here
        pair = terminal.pair_of(stub_files, index)
        slave = pair.open_slave(os.O_RDWR)
        fcntl.ioctl(slave, terminal.TIOCSCTTY, 1)
        return slave, info.pgrp
    return None


def give_foreground(taken):
    if taken is None:
        return
    slave, pgrp = taken
    try:
        if pgrp:
            fcntl.ioctl(slave, terminal.TIOCSPGRP, struct.pack("i", pgrp))
    finally:
        os.close(slave)
