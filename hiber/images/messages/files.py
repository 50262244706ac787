"""Messages of open files: fs, the file entries of each kind, fdinfo, and
file_entry, the union of them all."""

from .base import HIBER_FIELDS, S
from ..schema import optional, repeated, required

# ---- §2.14 fs ------------------------------------------------------------

S.message("fs_entry",
          required(1, "cwd_id", "uint32"),
          required(2, "root_id", "uint32"),
          optional(3, "umask", "uint32"))

# ---- §2.15-2.17 files ---------------------------------------------------

S.message("fown_entry",
          required(1, "uid", "uint32"),
          required(2, "euid", "uint32"),
          required(3, "signum", "uint32"),
          required(4, "pid_type", "uint32"),
          required(5, "pid", "uint32"))

S.message("fdinfo_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32"),
          required(3, "type", "fd_types"),
          required(4, "fd", "uint32"),
          optional(5, "xattr_security_selinux", "string"))

S.message("reg_file_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32", flags="rfile.flags"),
          required(3, "pos", "uint64"),
          required(5, "fown", "fown_entry"),
          required(6, "name", "string"),
          optional(7, "mnt_id", "sint32", default="-1"),
          optional(8, "size", "uint64"),
          optional(9, "ext", "bool"),
          optional(10, "mode", "uint32"),
          repeated(11, "build_id", "uint32"),
          optional(12, "checksum", "uint32"),
          optional(13, "checksum_config", "uint32"),
          optional(14, "checksum_parameter", "uint32"))

S.message("pipe_entry",
          required(1, "id", "uint32"),
          required(2, "pipe_id", "uint32"),
          required(3, "flags", "uint32", hex=True),
          required(4, "fown", "fown_entry"))

S.message("fifo_entry",
          required(1, "id", "uint32"),
          required(2, "pipe_id", "uint32"),
          optional(3, "regf_id", "uint32"))

S.message("pipe_data_entry",
          required(1, "pipe_id", "uint32"),
          required(2, "bytes", "uint32"),
          optional(3, "size", "uint32"))

S.message("memfd_file_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32", flags="rfile.flags"),
          required(3, "pos", "uint64"),
          required(4, "fown", "fown_entry"),
          required(5, "inode_id", "uint32"))

S.message("memfd_inode_entry",
          required(1, "name", "string"),
          required(2, "uid", "uint32"),
          required(3, "gid", "uint32"),
          required(4, "size", "uint64"),
          required(5, "shmid", "uint32"),
          required(6, "seals", "uint32", flags="seals.flags"),
          required(7, "inode_id", "uint64"),
          optional(8, "hugetlb_flag", "uint32"),
          optional(9, "mode", "uint32"))

S.message("tty_file_entry",
          required(1, "id", "uint32"),
          required(2, "tty_info_id", "uint32"),
          required(3, "flags", "uint32", hex=True),
          required(4, "fown", "fown_entry"),
          optional(6, "regf_id", "uint32"))

S.message("termios_entry",
          required(1, "c_iflag", "uint32"),
          required(2, "c_oflag", "uint32"),
          required(3, "c_cflag", "uint32"),
          required(4, "c_lflag", "uint32"),
          required(5, "c_line", "uint32"),
          required(6, "c_ispeed", "uint32"),
          required(7, "c_ospeed", "uint32"),
          repeated(8, "c_cc", "uint32"))

S.message("winsize_entry",
          required(1, "ws_row", "uint32"),
          required(2, "ws_col", "uint32"),
          required(3, "ws_xpixel", "uint32"),
          required(4, "ws_ypixel", "uint32"))

S.message("tty_pty_entry",
          required(1, "index", "uint32"))

S.message("tty_info_entry",
          required(1, "id", "uint32"),
          required(2, "type", "TtyType"),
          required(3, "locked", "bool"),
          required(4, "exclusive", "bool"),
          required(5, "packet_mode", "bool"),
          required(6, "sid", "uint32"),
          required(7, "pgrp", "uint32"),
          required(8, "rdev", "uint32", dev=True),
          optional(9, "termios", "termios_entry"),
          optional(10, "termios_locked", "termios_entry"),
          optional(11, "winsize", "winsize_entry"),
          optional(12, "pty", "tty_pty_entry"),
          optional(13, "dev", "uint32", dev=True),
          optional(14, "uid", "uint32"),
          optional(15, "gid", "uint32"))

S.message("tty_data_entry",
          required(1, "tty_id", "uint32"),
          required(2, "data", "bytes"))

S.message("eventfd_file_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32"),
          required(3, "fown", "fown_entry"),
          required(4, "counter", "uint64"),
          # hiber's own (see HIBER_FIELDS): reads take one (EFD_SEMAPHORE)
          optional(HIBER_FIELDS, "semaphore", "bool"))

S.message("eventpoll_tfd_entry",
          required(1, "id", "uint32"),
          required(2, "tfd", "uint32"),
          required(3, "events", "uint32"),
          required(4, "data", "uint64"),
          optional(5, "dev", "uint32"),
          optional(6, "inode", "uint64"),
          optional(7, "pos", "uint64"))

S.message("eventpoll_file_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32"),
          required(3, "fown", "fown_entry"),
          repeated(4, "tfd", "eventpoll_tfd_entry"))

S.message("signalfd_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32", hex=True),
          required(3, "fown", "fown_entry"),
          required(4, "sigmask", "uint64", hex=True))

S.message("timerfd_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32", hex=True),
          required(3, "fown", "fown_entry"),
          required(4, "clockid", "uint32"),
          required(5, "ticks", "uint64"),
          required(6, "settime_flags", "uint32", hex=True),
          required(7, "vsec", "uint64"),
          required(8, "vnsec", "uint64"),
          required(9, "isec", "uint64"),
          required(10, "insec", "uint64"))

# file_entry members this version knows; the others (inet and other
# sockets, inotify, ...) arrive with the issues that dump them and meanwhile
# survive a decode/encode round trip as unknown fields.
S.message("file_entry",
          required(1, "type", "fd_types"),
          required(2, "id", "uint32"),
          optional(3, "reg", "reg_file_entry"),
          optional(4, "isk", "inet_sk_entry"),
          optional(5, "nsf", "ns_file_entry"),
          optional(6, "psk", "packet_sock_entry"),
          optional(7, "nlsk", "netlink_sk_entry"),
          optional(8, "efd", "eventfd_file_entry"),
          optional(9, "epfd", "eventpoll_file_entry"),
          optional(10, "sgfd", "signalfd_entry"),
          optional(12, "tfd", "timerfd_entry"),
          optional(13, "ify", "inotify_file_entry"),
          optional(14, "ffy", "fanotify_file_entry"),
          optional(16, "usk", "unix_sk_entry"),
          optional(17, "fifo", "fifo_entry"),
          optional(18, "pipe", "pipe_entry"),
          optional(19, "tty", "tty_file_entry"),
          optional(20, "memfd", "memfd_file_entry"),
          optional(22, "pidfd", "pidfd_entry"))

# inotify (fsnotify.proto) and file handles (fh.proto)
S.message("fh_entry",
          required(1, "bytes", "uint32"),
          required(2, "type", "uint32"),
          repeated(3, "handle", "uint64"),
          optional(4, "path", "string"),
          optional(5, "mnt_id", "uint32"))

S.message("inotify_wd_entry",
          required(1, "id", "uint32"),
          required(2, "i_ino", "uint64"),
          required(3, "mask", "uint32", hex=True),
          required(4, "ignored_mask", "uint32", hex=True),
          required(5, "s_dev", "uint32"),
          required(6, "wd", "uint32"),
          required(7, "f_handle", "fh_entry"))

S.message("inotify_file_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32", hex=True),
          required(4, "fown", "fown_entry"),
          repeated(5, "wd", "inotify_wd_entry"))

S.enum("mark_type", INODE=1, MOUNT=2)

S.message("fanotify_inode_mark_entry",
          required(1, "i_ino", "uint64"),
          required(2, "f_handle", "fh_entry"))

S.message("fanotify_mount_mark_entry",
          required(1, "mnt_id", "uint32"),
          optional(2, "path", "string"))

S.message("fanotify_mark_entry",
          required(1, "id", "uint32"),
          required(2, "type", "mark_type"),
          required(3, "mflags", "uint32", hex=True),
          required(4, "mask", "uint32", hex=True),
          required(5, "ignored_mask", "uint32", hex=True),
          required(6, "s_dev", "uint32"),
          optional(7, "ie", "fanotify_inode_mark_entry"),
          optional(8, "me", "fanotify_mount_mark_entry"))

S.message("fanotify_file_entry",
          required(1, "id", "uint32"),
          required(2, "flags", "uint32", hex=True),
          required(3, "fown", "fown_entry"),
          required(4, "faflags", "uint32", hex=True),
          required(5, "evflags", "uint32", hex=True),
          repeated(6, "mark", "fanotify_mark_entry"))

# a pidfd (CRIU's pidfd.proto): nspid -1 for a process that is gone
S.message("pidfd_entry",
          required(1, "id", "uint32"),
          required(2, "ino", "uint32"),
          required(3, "flags", "uint32"),
          required(4, "nspid", "int32"),
          required(5, "fown", "fown_entry"))

# a namespace file (CRIU's ns.proto): /proc/PID/ns/KIND held open
S.message("ns_file_entry",
          required(1, "id", "uint32"),
          required(2, "ns_id", "uint32"),
          required(3, "ns_cflag", "uint32"),
          required(4, "flags", "uint32"))

# ---- file locks: filelocks.img (CRIU's file-lock.proto) ----------------

S.message("file_lock_entry",
          required(1, "flag", "uint32"),
          required(2, "type", "uint32"),
          required(3, "pid", "int32"),
          required(4, "fd", "int32"),
          required(5, "start", "int64"),
          required(6, "len", "int64"))

# ---- files gone from the file system: remap-fpath.img, ghost-file-N.img --

S.enum("remap_type", LINKED=0, GHOST=1, PROCFS=2)

S.message("remap_file_path_entry",
          required(1, "orig_id", "uint32"),
          required(2, "remap_id", "uint32"),
          optional(3, "remap_type", "remap_type"))

S.message("timeval",
          required(1, "tv_sec", "uint64"),
          required(2, "tv_usec", "uint64"))

S.message("ghost_file_entry",
          required(1, "uid", "uint32"),
          required(2, "gid", "uint32"),
          required(3, "mode", "uint32"),
          optional(4, "dev", "uint32"),
          optional(5, "ino", "uint64"),
          optional(6, "rdev", "uint32"),
          optional(7, "atim", "timeval"),
          optional(8, "mtim", "timeval"),
          optional(9, "chunks", "bool"),
          optional(10, "size", "uint64"),
          optional(11, "symlnk_target", "string"))

S.message("ghost_chunk_entry",
          required(1, "len", "uint64"),
          required(2, "off", "uint64"))
