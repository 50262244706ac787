"""The messages of criu's RPC (CRIU's images/rpc.proto): criu_req and
criu_resp, one per SOCK_SEQPACKET datagram, and what they carry.  They are
no image, but the same schema machinery writes them."""

from .base import S
from ..schema import optional, repeated, required

S.enum("criu_cg_mode", IGNORE=0, CG_NONE=1, PROPS=2, SOFT=3, FULL=4, STRICT=5, DEFAULT=6)
S.enum("criu_network_lock_method", IPTABLES=1, NFTABLES=2, SKIP=3)
S.enum("criu_pre_dump_mode", SPLICE=1, VM_READ=2)
S.enum("criu_req_type", EMPTY=0, DUMP=1, RESTORE=2, CHECK=3, PRE_DUMP=4, PAGE_SERVER=5,
       NOTIFY=6, CPUINFO_DUMP=7, CPUINFO_CHECK=8, FEATURE_CHECK=9, VERSION=10, WAIT_PID=11,
       PAGE_SERVER_CHLD=12, SINGLE_PRE_DUMP=13)

S.message("criu_page_server_info",
          optional(1, "address", "string"),
          optional(2, "port", "int32"),
          optional(3, "pid", "int32"),
          optional(4, "fd", "int32"))

S.message("criu_veth_pair", required(1, "if_in", "string"), required(2, "if_out", "string"))
S.message("ext_mount_map", required(1, "key", "string"), required(2, "val", "string"))
S.message("join_namespace", required(1, "ns", "string"), required(2, "ns_file", "string"),
          optional(3, "extra_opt", "string"))
S.message("inherit_fd", required(1, "key", "string"), required(2, "fd", "int32"))
S.message("cgroup_root", optional(1, "ctrl", "string"), required(2, "path", "string"))
S.message("unix_sk", required(1, "inode", "uint32"))

S.message("criu_opts",
          required(1, "images_dir_fd", "int32"),
          optional(68, "images_dir", "string"),
          optional(2, "pid", "int32"),
          optional(3, "leave_running", "bool"),
          optional(4, "ext_unix_sk", "bool"),
          optional(5, "tcp_established", "bool"),
          optional(6, "evasive_devices", "bool"),
          optional(7, "shell_job", "bool"),
          optional(8, "file_locks", "bool"),
          optional(9, "log_level", "int32"),
          optional(10, "log_file", "string"),
          optional(11, "ps", "criu_page_server_info"),
          optional(12, "notify_scripts", "bool"),
          optional(13, "root", "string"),
          optional(14, "parent_img", "string"),
          optional(15, "track_mem", "bool"),
          optional(16, "auto_dedup", "bool"),
          optional(17, "work_dir_fd", "int32"),
          optional(18, "link_remap", "bool"),
          repeated(19, "veths", "criu_veth_pair"),
          optional(20, "cpu_cap", "uint32"),
          optional(21, "force_irmap", "bool"),
          repeated(22, "exec_cmd", "string"),
          repeated(23, "ext_mnt", "ext_mount_map"),
          optional(24, "manage_cgroups", "bool"),
          repeated(25, "cg_root", "cgroup_root"),
          optional(26, "rst_sibling", "bool"),
          repeated(27, "inherit_fd", "inherit_fd"),
          optional(28, "auto_ext_mnt", "bool"),
          optional(29, "ext_sharing", "bool"),
          optional(30, "ext_masters", "bool"),
          repeated(31, "skip_mnt", "string"),
          repeated(32, "enable_fs", "string"),
          repeated(33, "unix_sk_ino", "unix_sk"),
          optional(34, "manage_cgroups_mode", "criu_cg_mode"),
          optional(35, "ghost_limit", "uint32"),
          repeated(36, "irmap_scan_paths", "string"),
          repeated(37, "external", "string"),
          optional(38, "empty_ns", "uint32"),
          repeated(39, "join_ns", "join_namespace"),
          optional(41, "cgroup_props", "string"),
          optional(42, "cgroup_props_file", "string"),
          repeated(43, "cgroup_dump_controller", "string"),
          optional(44, "freeze_cgroup", "string"),
          optional(45, "timeout", "uint32"),
          optional(46, "tcp_skip_in_flight", "bool"),
          optional(47, "weak_sysctls", "bool"),
          optional(48, "lazy_pages", "bool"),
          optional(49, "status_fd", "int32"),
          optional(50, "orphan_pts_master", "bool"),
          optional(51, "config_file", "string"),
          optional(52, "tcp_close", "bool"),
          optional(53, "lsm_profile", "string"),
          optional(54, "tls_cacert", "string"),
          optional(55, "tls_cacrl", "string"),
          optional(56, "tls_cert", "string"),
          optional(57, "tls_key", "string"),
          optional(58, "tls", "bool"),
          optional(59, "tls_no_cn_verify", "bool"),
          optional(60, "cgroup_yard", "string"),
          optional(61, "pre_dump_mode", "criu_pre_dump_mode"),
          optional(62, "pidfd_store_sk", "int32"),
          optional(63, "lsm_mount_context", "string"),
          optional(64, "network_lock", "criu_network_lock_method"),
          optional(65, "mntns_compat_mode", "bool"),
          optional(66, "skip_file_rwx_check", "bool"),
          optional(67, "unprivileged", "bool"),
          optional(69, "leave_stopped", "bool"),
          optional(70, "display_stats", "bool"),
          optional(71, "log_to_stderr", "bool"))

S.message("criu_dump_resp", optional(1, "restored", "bool"))
S.message("criu_restore_resp", required(1, "pid", "int32"))
S.message("criu_notify", optional(1, "script", "string"), optional(2, "pid", "int32"))
S.message("criu_features",
          optional(1, "mem_track", "bool"),
          optional(2, "lazy_pages", "bool"),
          optional(3, "pidfd_store", "bool"))

S.message("criu_req",
          required(1, "type", "criu_req_type"),
          optional(2, "opts", "criu_opts"),
          optional(3, "notify_success", "bool"),
          optional(4, "keep_open", "bool"),
          optional(5, "features", "criu_features"),
          optional(6, "pid", "uint32"))

S.message("criu_version",
          required(1, "major_number", "int32"),
          required(2, "minor_number", "int32"),
          optional(3, "gitid", "string"),
          optional(4, "sublevel", "int32"),
          optional(5, "extra", "int32"),
          optional(6, "name", "string"))

S.message("criu_resp",
          required(1, "type", "criu_req_type"),
          required(2, "success", "bool"),
          optional(3, "dump", "criu_dump_resp"),
          optional(4, "restore", "criu_restore_resp"),
          optional(5, "notify", "criu_notify"),
          optional(6, "ps", "criu_page_server_info"),
          optional(7, "cr_errno", "int32"),
          optional(8, "features", "criu_features"),
          optional(9, "cr_errmsg", "string"),
          optional(10, "version", "criu_version"),
          optional(11, "status", "int32"))
