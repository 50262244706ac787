"""The new mount API (fsopen, fsconfig, fsmount): a file system mounted
nowhere, reached only through the descriptor fsmount returns.  hiber uses it
to see a cgroup hierarchy without adding a mount anyone else could see or
have to clean up: the mount goes away with the descriptor."""

import ctypes
import os

from . import sys

sys.NR.update(fsopen=430, fsconfig=431, fsmount=432)

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6


def _c(text):
    return ctypes.c_char_p(text.encode()) if text is not None else ctypes.c_void_p(0)


def detached_mount(fstype, flags=(), strings=()):
    """A descriptor of a new mount of fstype that is attached nowhere.
    flags: option names set as flags (a v1 cgroup's controllers);
    strings: (key, value) options (a named v1 hierarchy's name)."""
    fs = sys.syscall("fsopen", _c(fstype), FSOPEN_CLOEXEC)
    try:
        for flag in flags:
            sys.syscall("fsconfig", fs, FSCONFIG_SET_FLAG, _c(flag), ctypes.c_void_p(0), 0)
        for key, value in strings:
            sys.syscall("fsconfig", fs, FSCONFIG_SET_STRING, _c(key), _c(value), 0)
        sys.syscall("fsconfig", fs, FSCONFIG_CMD_CREATE, ctypes.c_void_p(0),
                    ctypes.c_void_p(0), 0)
        return sys.syscall("fsmount", fs, FSMOUNT_CLOEXEC, 0)
    finally:
        os.close(fs)
