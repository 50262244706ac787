"""Messages of a task: the inventory, the process tree, ids, registers,
signals, timers, rlimits, credentials, the core, seccomp, time namespace
offsets and the dump statistics."""

from .base import HIBER_FIELDS, S
from ..schema import optional, repeated, required

# ---- §2.1 inventory ----------------------------------------------------

S.message("plugins_entry",
          repeated(12, "plugins", "string"))

S.message("inventory_entry",
          required(1, "img_version", "uint32"),
          optional(2, "fdinfo_per_id", "bool"),
          optional(3, "root_ids", "task_kobj_ids_entry"),
          optional(4, "ns_per_id", "bool"),
          optional(5, "root_cg_set", "uint32"),
          optional(6, "lsmtype", "lsmtype"),
          optional(8, "dump_uptime", "uint64"),
          optional(9, "pre_dump_mode", "uint32"),
          optional(10, "tcp_close", "bool"),
          optional(11, "network_lock_method", "uint32"),
          optional(12, "plugins_entry", "plugins_entry"),
          optional(13, "dump_criu_run_id", "string"),
          optional(14, "allow_uprobes", "bool"))

# ---- §2.2 process tree -------------------------------------------------

S.message("pstree_entry",
          required(1, "pid", "uint32"),
          required(2, "ppid", "uint32"),
          required(3, "pgid", "uint32"),
          required(4, "sid", "uint32"),
          repeated(5, "threads", "uint32"))

# ---- §2.11 ids ---------------------------------------------------------

S.message("task_kobj_ids_entry",
          required(1, "vm_id", "uint32"),
          required(2, "files_id", "uint32"),
          required(3, "fs_id", "uint32"),
          required(4, "sighand_id", "uint32"),
          optional(5, "pid_ns_id", "uint32"),
          optional(6, "net_ns_id", "uint32"),
          optional(7, "ipc_ns_id", "uint32"),
          optional(8, "uts_ns_id", "uint32"),
          optional(9, "mnt_ns_id", "uint32"),
          optional(10, "user_ns_id", "uint32"),
          optional(11, "cgroup_ns_id", "uint32"),
          optional(12, "time_ns_id", "uint32"))

# ---- §2.6 x86 registers ------------------------------------------------

_GPREGS = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
           "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp",
           "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"]
S.message("user_x86_regs_entry",
          *[required(i + 1, name, "uint64") for i, name in enumerate(_GPREGS)],
          optional(28, "mode", "user_x86_regs_mode", default="NATIVE"))

S.message("user_x86_cet_entry",
          required(1, "cet", "uint64", hex=True),
          required(2, "ssp", "uint64", hex=True))

S.message("user_x86_xsave_entry",
          required(1, "xstate_bv", "uint64"),
          repeated(2, "ymmh_space", "uint32"),
          repeated(3, "bndreg_state", "uint64"),
          repeated(4, "bndcsr_state", "uint64"),
          repeated(5, "opmask_reg", "uint64"),
          repeated(6, "zmm_upper", "uint64"),
          repeated(7, "hi16_zmm", "uint64"),
          repeated(8, "pkru", "uint32"),
          optional(9, "cet", "user_x86_cet_entry"))

S.message("user_x86_fpregs_entry",
          required(1, "cwd", "uint32"),
          required(2, "swd", "uint32"),
          required(3, "twd", "uint32"),
          required(4, "fop", "uint32"),
          required(5, "rip", "uint64"),
          required(6, "rdp", "uint64"),
          required(7, "mxcsr", "uint32"),
          required(8, "mxcsr_mask", "uint32"),
          repeated(9, "st_space", "uint32"),
          repeated(10, "xmm_space", "uint32"),
          repeated(11, "padding", "uint32"),
          optional(13, "xsave", "user_x86_xsave_entry"))

S.message("user_desc_t",
          required(1, "entry_number", "uint32"),
          required(2, "base_addr", "uint32"),
          required(3, "limit", "uint32"),
          required(4, "seg_32bit", "bool"),
          required(5, "contents_h", "bool"),
          required(6, "contents_l", "bool"),
          required(7, "read_exec_only", "bool", default="true"),
          required(8, "limit_in_pages", "bool"),
          required(9, "seg_not_present", "bool", default="true"),
          required(10, "usable", "bool"))

S.message("thread_info_x86",
          required(1, "clear_tid_addr", "uint64", hex=True),
          required(2, "gpregs", "user_x86_regs_entry", hex=True),
          required(3, "fpregs", "user_x86_fpregs_entry"),
          repeated(4, "tls", "user_desc_t"))

# ---- §2.7 signal handlers, §2.8 timers, §2.9 rlimits ------------------

S.message("sa_entry",
          required(1, "sigaction", "uint64", hex=True),
          required(2, "flags", "uint64", hex=True),
          required(3, "restorer", "uint64", hex=True),
          required(4, "mask", "uint64", hex=True),
          optional(5, "compat_sigaction", "bool"),
          optional(6, "mask_extended", "uint64", hex=True))

S.message("itimer_entry",
          required(1, "isec", "uint64"),
          required(2, "iusec", "uint64"),
          required(3, "vsec", "uint64"),
          required(4, "vusec", "uint64"))

S.message("posix_timer_entry",
          required(1, "it_id", "uint32"),
          required(2, "clock_id", "uint32"),
          required(3, "si_signo", "uint32"),
          required(4, "it_sigev_notify", "uint32"),
          required(5, "sival_ptr", "uint64"),
          required(6, "overrun", "uint32"),
          required(7, "isec", "uint64"),
          required(8, "insec", "uint64"),
          required(9, "vsec", "uint64"),
          required(10, "vnsec", "uint64"),
          optional(11, "notify_thread_id", "int32"))

S.message("task_timers_entry",
          required(1, "real", "itimer_entry"),
          required(2, "virt", "itimer_entry"),
          required(3, "prof", "itimer_entry"),
          repeated(4, "posix", "posix_timer_entry"),
          # hiber's own (see HIBER_FIELDS): the id the next timer_create() gets,
          # when it is not the one after the highest id in use
          optional(HIBER_FIELDS, "next_posix_timer_id", "uint32"))

S.message("rlimit_entry",
          required(1, "cur", "uint64"),
          required(2, "max", "uint64"))

S.message("task_rlimits_entry",
          repeated(1, "rlimits", "rlimit_entry"))

# ---- pending signals (§2.5) --------------------------------------------

S.message("siginfo_entry",
          required(1, "siginfo", "bytes"))

S.message("signal_queue_entry",
          repeated(1, "signals", "siginfo_entry"))

# ---- §2.10 credentials -------------------------------------------------

S.message("creds_entry",
          required(1, "uid", "uint32"),
          required(2, "gid", "uint32"),
          required(3, "euid", "uint32"),
          required(4, "egid", "uint32"),
          required(5, "suid", "uint32"),
          required(6, "sgid", "uint32"),
          required(7, "fsuid", "uint32"),
          required(8, "fsgid", "uint32"),
          repeated(9, "cap_inh", "uint32"),
          repeated(10, "cap_prm", "uint32"),
          repeated(11, "cap_eff", "uint32"),
          repeated(12, "cap_bnd", "uint32"),
          required(13, "secbits", "uint32"),
          repeated(14, "groups", "uint32"),
          optional(15, "lsm_profile", "string"),
          optional(16, "lsm_sockcreate", "string"),
          optional(17, "apparmor_data", "bytes"),
          optional(18, "no_new_privs", "uint32"),
          repeated(19, "cap_amb", "uint32"))

# ---- §2.4/§2.5 per-process and per-thread core --------------------------

S.message("thread_sas_entry",
          required(1, "ss_sp", "uint64"),
          required(2, "ss_size", "uint64"),
          required(3, "ss_flags", "uint32"))

S.message("rseq_entry",
          required(1, "rseq_abi_pointer", "uint64"),
          required(2, "rseq_abi_size", "uint32"),
          required(3, "signature", "uint32"),
          optional(4, "rseq_cs_pointer", "uint64"))

S.message("task_core_entry",
          required(1, "task_state", "uint32", dict="gen"),
          required(2, "exit_code", "uint32"),
          required(3, "personality", "uint32"),
          required(4, "flags", "uint32"),
          required(5, "blk_sigset", "uint64", hex=True),
          required(6, "comm", "string"),
          optional(7, "timers", "task_timers_entry"),
          optional(8, "rlimits", "task_rlimits_entry"),
          optional(9, "cg_set", "uint32"),
          optional(10, "signals_s", "signal_queue_entry"),
          optional(11, "old_seccomp_mode", "seccomp_mode"),
          optional(12, "old_seccomp_filter", "uint32"),
          optional(13, "loginuid", "uint32"),
          optional(14, "oom_score_adj", "int32"),
          repeated(15, "sigactions", "sa_entry"),
          optional(18, "child_subreaper", "bool"),
          optional(20, "blk_sigset_extended", "uint64", hex=True),
          optional(21, "stop_signo", "uint32"),
          optional(22, "membarrier_registration_mask", "uint32"),
          # hiber's own (see HIBER_FIELDS): mlockall() flags MCL_FUTURE|MCL_ONFAULT
          optional(HIBER_FIELDS, "mlockall", "uint32", hex=True))

S.message("thread_core_entry",
          required(1, "futex_rla", "uint64"),
          required(2, "futex_rla_len", "uint32"),
          optional(3, "sched_nice", "sint32"),
          optional(4, "sched_policy", "uint32"),
          optional(5, "sched_prio", "uint32"),
          optional(6, "blk_sigset", "uint64"),
          optional(7, "sas", "thread_sas_entry"),
          optional(8, "pdeath_sig", "uint32"),
          optional(9, "signals_p", "signal_queue_entry"),
          optional(10, "creds", "creds_entry"),
          optional(11, "seccomp_mode", "seccomp_mode"),
          optional(12, "seccomp_filter", "uint32"),
          optional(13, "comm", "string"),
          optional(14, "blk_sigset_extended", "uint64"),
          optional(15, "rseq_entry", "rseq_entry"),
          optional(16, "cg_set", "uint32"),
          # hiber's own (see HIBER_FIELDS): the CPUs the thread may run on,
          # written only when that is not every CPU online at dump time
          repeated(HIBER_FIELDS, "cpu_affinity", "uint32"))

S.message("core_entry",
          required(1, "mtype", "march"),
          optional(2, "thread_info", "thread_info_x86"),
          optional(3, "tc", "task_core_entry"),
          optional(4, "ids", "task_kobj_ids_entry"),
          optional(5, "thread_core", "thread_core_entry"))

# ---- §2.18 seccomp, §2.19 timens, §2.20 stats ---------------------------

S.message("seccomp_filter",
          required(1, "filter", "bytes"),
          optional(2, "prev", "uint32"),
          optional(3, "flags", "uint32"))

S.message("seccomp_entry",
          repeated(1, "seccomp_filters", "seccomp_filter"))

S.message("timespec",
          required(1, "tv_sec", "uint64"),
          required(2, "tv_nsec", "uint64"))

S.message("timens_entry",
          required(1, "monotonic", "timespec"),
          required(2, "boottime", "timespec"))

S.message("dump_stats_entry",
          required(1, "freezing_time", "uint32"),
          required(2, "frozen_time", "uint32"),
          required(3, "memdump_time", "uint32"),
          required(4, "memwrite_time", "uint32"),
          required(5, "pages_scanned", "uint64"),
          required(6, "pages_skipped_parent", "uint64"),
          required(7, "pages_written", "uint64"),
          optional(8, "irmap_resolve", "uint32"),
          required(9, "pages_lazy", "uint64"),
          optional(10, "page_pipes", "uint64"),
          optional(11, "page_pipe_bufs", "uint64"),
          optional(12, "shpages_scanned", "uint64"),
          optional(13, "shpages_skipped_parent", "uint64"),
          optional(14, "shpages_written", "uint64"))

S.message("restore_stats_entry",
          required(1, "pages_compared", "uint64"),
          required(2, "pages_skipped_cow", "uint64"),
          required(3, "forking_time", "uint32"),
          required(4, "restore_time", "uint32"),
          optional(5, "pages_restored", "uint64"))

S.message("stats_entry",
          optional(1, "dump", "dump_stats_entry"),
          optional(2, "restore", "restore_stats_entry"))
