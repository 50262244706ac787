"""criu_opts -> hiber.Options, the images dir, the work dir and logging.

Every field a client may set is either mapped onto the Options field the
command line fills, or refused with an error naming it (never silently
ignored).  Descriptors given by number (images_dir_fd, work_dir_fd) are the
client's: they are reached through /proc/<client>/fd, as criu does, the
client being the peer of the service's socket (SO_PEERCRED)."""

import errno
import os

from ..errors import UsageError
from ..options import Options

CG_MODES = {0: "ignore", 1: "none", 2: "props", 3: "soft", 4: "full", 5: "strict", 6: "soft"}
LOCK_METHODS = {1: None, 2: "nftables", 3: "skip"}  # iptables: the lock hiber has (nftables)
PRE_DUMP_MODES = {1: "splice", 2: "read"}

# fields hiber cannot honour: the reason, in words
REFUSED = {
    "veths": "external veth pairs", "exec_cmd": "running a command after the restore",
    "ext_mnt": "external mounts", "rst_sibling": "restoring as the client's sibling",
    "inherit_fd": "descriptors inherited from the client", "auto_ext_mnt": "external mounts",
    "ext_sharing": "external mounts", "ext_masters": "external mounts",
    "skip_mnt": "mount namespaces", "enable_fs": "mount namespaces",
    "unix_sk_ino": "external unix sockets by inode", "external": "external resources",
    "join_ns": "joining namespaces", "cgroup_props": "custom cgroup properties",
    "cgroup_props_file": "custom cgroup properties", "freeze_cgroup": "the cgroup freezer",
    "orphan_pts_master": "giving a pty master back", "config_file": "configuration files",
    "lsm_profile": "another LSM profile", "tls": "TLS", "tls_cacert": "TLS",
    "tls_cacrl": "TLS", "tls_cert": "TLS", "tls_key": "TLS", "tls_no_cn_verify": "TLS",
    "pidfd_store_sk": "a pidfd store", "lsm_mount_context": "LSM mount contexts",
    "mntns_compat_mode": "mount namespaces", "unprivileged": "unprivileged mode",
}


class Refused(UsageError):
    """A request hiber will not serve: cr_errno and the message go back."""

    def __init__(self, message, cr_errno=errno.EINVAL):
        super().__init__(message)
        self.cr_errno = cr_errno


def _set(opts, name):
    try:
        return opts.HasField(name) and bool(getattr(opts, name))
    except ValueError:  # a repeated field has no presence: set when not empty
        return len(getattr(opts, name)) > 0


def client_path(peer, fd, what):
    """A descriptor number of the client, as a path hiber can open."""
    path = f"/proc/{peer}/fd/{fd}"
    if not os.path.exists(path):
        raise Refused(f"{what} {fd} is not a descriptor of the client (PID {peer})",
                      errno.EBADF)
    return os.path.realpath(path)


class Request:
    """What one request asks, read from its criu_opts."""

    def __init__(self, opts, peer):
        for name, why in REFUSED.items():
            if _set(opts, name):
                raise Refused(f"criu_opts.{name} is not supported: hiber has no {why} yet",
                              errno.EOPNOTSUPP)
        if _set(opts, "root") and os.path.realpath(opts.root) != "/":
            raise Refused("criu_opts.root is not supported: hiber restores into its own root "
                          "only", errno.EOPNOTSUPP)
        if _set(opts, "empty_ns"):
            raise Refused("criu_opts.empty_ns is not supported: hiber restores namespaces as "
                          "dumped", errno.EOPNOTSUPP)
        if opts.HasField("images_dir_fd") and opts.images_dir_fd >= 0:
            self.images_dir = client_path(peer, opts.images_dir_fd, "images_dir_fd")
        elif _set(opts, "images_dir"):
            self.images_dir = opts.images_dir
        else:
            self.images_dir = None
        self.work_dir = client_path(peer, opts.work_dir_fd, "work_dir_fd") \
            if opts.HasField("work_dir_fd") and opts.work_dir_fd >= 0 else self.images_dir
        self.log_file = opts.log_file if _set(opts, "log_file") else None
        self.log_level = opts.log_level if opts.HasField("log_level") else 2
        self.pid = opts.pid if opts.HasField("pid") else None
        self.notify_scripts = _set(opts, "notify_scripts")
        self.display_stats = _set(opts, "display_stats")
        ps = opts.ps if opts.HasField("ps") else None
        mode = opts.manage_cgroups_mode if opts.HasField("manage_cgroups_mode") else 6
        lock = opts.network_lock if opts.HasField("network_lock") else 1
        self.options = Options(
            leave_running=_set(opts, "leave_running"),
            leave_stopped=_set(opts, "leave_stopped"),
            shell_job=_set(opts, "shell_job"),
            ext_unix_sk=_set(opts, "ext_unix_sk"),
            tcp_established=_set(opts, "tcp_established"),
            tcp_close=_set(opts, "tcp_close"),
            tcp_skip_in_flight=_set(opts, "tcp_skip_in_flight"),
            network_lock=LOCK_METHODS[lock],
            file_locks=_set(opts, "file_locks"),
            track_mem=_set(opts, "track_mem"),
            prev_images_dir=opts.parent_img if _set(opts, "parent_img") else None,
            auto_dedup=_set(opts, "auto_dedup"),
            lazy_pages=_set(opts, "lazy_pages"),
            page_server=ps is not None and ps.HasField("port"),
            address=ps.address if ps is not None and ps.HasField("address") else None,
            port=ps.port if ps is not None and ps.HasField("port") else None,
            status_fd=opts.status_fd if opts.HasField("status_fd") else None,
            pre_dump_mode=PRE_DUMP_MODES[opts.pre_dump_mode]
            if opts.HasField("pre_dump_mode") else "splice",
            manage_cgroups=CG_MODES[mode],
            cgroup_roots=tuple((r.ctrl if r.HasField("ctrl") else None, r.path)
                               for r in opts.cg_root),
            cgroup_yard=opts.cgroup_yard if _set(opts, "cgroup_yard") else None,
            cgroup_dump_controllers=tuple(opts.cgroup_dump_controller),
            ghost_limit=opts.ghost_limit if opts.HasField("ghost_limit") else 1 << 20,
            restore_detached=True,  # the service's restores are detached, as criu's
            show_progress=False)
