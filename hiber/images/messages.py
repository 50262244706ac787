"""The CRIU v4.2 image messages, written from shared/spec/criu-image-format.md.

Numbers, types and labels follow the spec section named above each group;
they decide wire compatibility with CRIU and crit.  Display options (hex,
flags, dict, dev) reproduce how crit prints each field in ``decode --pretty``.
"""

from .schema import Schema, optional, repeated, required

schema = Schema("hiber_criu.proto")
S = schema

# State that CRIU 4.2's messages have no field for (CPU affinity, mlockall,
# lock-on-fault and sealed VMAs, the next POSIX timer id) is kept in fields of hiber's own, numbered
# from here: far above CRIU's numbers, so that no field CRIU adds can take
# them. CRIU and crit read such images all the same: protobuf skips fields
# it does not know.
HIBER_FIELDS = 1000

# ---- enums -------------------------------------------------------------

S.enum("lsmtype", NO_LSM=0, SELINUX=1, APPARMOR=2)
S.enum("march", UNKNOWN=0, X86_64=1, ARM=2, AARCH64=3, PPC64=4, S390=5,
       MIPS=6, LOONGARCH64=7, RISCV64=8)
S.enum("seccomp_mode", disabled=0, strict=1, filter=2)
S.enum("user_x86_regs_mode", NATIVE=1, COMPAT=2)
S.enum("fd_types", UND=0, REG=1, PIPE=2, FIFO=3, INETSK=4, UNIXSK=5,
       EVENTFD=6, EVENTPOLL=7, INOTIFY=8, SIGNALFD=9, PACKETSK=10, TTY=11,
       FANOTIFY=12, NETLINKSK=13, NS=14, TUNF=15, EXT=16, TIMERFD=17,
       MEMFD=18, BPFMAP=19, PIDFD=20, CTTY=65534, AUTOFS_PIPE=65535)
S.enum("TtyType", nested_in="tty_info_entry", UNKNOWN=0, PTY=1, CONSOLE=2, VT=3, CTTY=4, EXT_TTY=5,
       SERIAL=6)

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

# ---- §2.12/§2.13 memory --------------------------------------------------

S.message("vma_entry",
          required(1, "start", "uint64", hex=True),
          required(2, "end", "uint64", hex=True),
          required(3, "pgoff", "uint64"),
          required(4, "shmid", "uint64"),
          required(5, "prot", "uint32", flags="mmap.prot"),
          required(6, "flags", "uint32", flags="mmap.flags"),
          required(7, "status", "uint32", flags="mmap.status"),
          required(8, "fd", "sint64"),
          optional(9, "madv", "uint64", hex=True),
          optional(10, "fdflags", "uint32", hex=True),
          # hiber's own (see HIBER_FIELDS): lock-on-fault (mlock2 MLOCK_ONFAULT), mseal(),
          # the name of an anonymous mapping (prctl PR_SET_VMA_ANON_NAME)
          optional(HIBER_FIELDS, "lock_onfault", "bool"),
          optional(HIBER_FIELDS + 1, "sealed", "bool"),
          optional(HIBER_FIELDS + 2, "anon_name", "string"))

S.message("aio_ring_entry",
          required(1, "id", "uint64"),
          required(2, "nr_req", "uint32"),
          required(3, "ring_len", "uint32"))

S.message("mm_entry",
          required(1, "mm_start_code", "uint64", hex=True),
          required(2, "mm_end_code", "uint64", hex=True),
          required(3, "mm_start_data", "uint64", hex=True),
          required(4, "mm_end_data", "uint64", hex=True),
          required(5, "mm_start_stack", "uint64", hex=True),
          required(6, "mm_start_brk", "uint64", hex=True),
          required(7, "mm_brk", "uint64", hex=True),
          required(8, "mm_arg_start", "uint64", hex=True),
          required(9, "mm_arg_end", "uint64", hex=True),
          required(10, "mm_env_start", "uint64", hex=True),
          required(11, "mm_env_end", "uint64", hex=True),
          required(12, "exe_file_id", "uint32"),
          repeated(13, "mm_saved_auxv", "uint64"),
          repeated(14, "vmas", "vma_entry"),
          optional(15, "dumpable", "int32"),
          repeated(16, "aios", "aio_ring_entry"),
          optional(17, "thp_disabled", "bool"))

# ---- §1.8 pagemap ------------------------------------------------------

S.message("pagemap_head",
          required(1, "pages_id", "uint32"))

S.message("pagemap_entry",
          required(1, "vaddr", "uint64", hex=True),
          required(2, "compat_nr_pages", "uint32"),
          optional(3, "in_parent", "bool"),
          optional(4, "flags", "uint32", flags="pmap.flags"),
          optional(5, "nr_pages", "uint64"))

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

# ---- sockets (CRIU's sk-opts.proto, sk-unix.proto, sk-packet.proto) -------

S.enum("sk_shutdown", NONE=0, READ=1, WRITE=2, BOTH=3)

S.message("sk_opts_entry",
          required(1, "so_sndbuf", "uint32"),
          required(2, "so_rcvbuf", "uint32"),
          required(3, "so_snd_tmo_sec", "uint64"),
          required(4, "so_snd_tmo_usec", "uint64"),
          required(5, "so_rcv_tmo_sec", "uint64"),
          required(6, "so_rcv_tmo_usec", "uint64"),
          optional(7, "reuseaddr", "bool"),
          optional(8, "so_priority", "uint32"),
          optional(9, "so_rcvlowat", "uint32"),
          optional(10, "so_mark", "uint32"),
          optional(11, "so_passcred", "bool"),
          optional(12, "so_passsec", "bool"),
          optional(13, "so_dontroute", "bool"),
          optional(14, "so_no_check", "bool"),
          optional(15, "so_bound_dev", "string"),
          repeated(16, "so_filter", "fixed64"),
          optional(17, "so_reuseport", "bool"),
          optional(18, "so_broadcast", "bool"),
          optional(19, "so_keepalive", "bool"),
          optional(20, "tcp_keepcnt", "uint32"),
          optional(21, "tcp_keepidle", "uint32"),
          optional(22, "tcp_keepintvl", "uint32"),
          optional(23, "so_oobinline", "uint32"),
          optional(24, "so_linger", "uint32"),
          optional(25, "so_buf_lock", "uint32"),
          # hiber's own (see HIBER_FIELDS): SO_PEEK_OFF when the program
          # enabled it (-1, off, is the kernel's default), SO_PASSPIDFD, and
          # SO_PASSRIGHTS when the program turned it off (on by default)
          optional(HIBER_FIELDS, "so_peek_off", "sint32"),
          optional(HIBER_FIELDS + 1, "so_passpidfd", "bool"),
          optional(HIBER_FIELDS + 2, "so_passrights", "bool"))

S.message("file_perms_entry",
          required(1, "mode", "uint32"),
          required(2, "uid", "uint32"),
          required(3, "gid", "uint32"))

S.message("unix_sk_entry",
          required(1, "id", "uint32"),
          required(2, "ino", "uint32"),
          required(3, "type", "uint32", dict="sk"),
          required(4, "state", "uint32", dict="sk"),
          required(5, "flags", "uint32", hex=True),
          required(6, "uflags", "uint32", hex=True),
          required(7, "backlog", "uint32"),
          required(8, "peer", "uint32"),
          required(9, "fown", "fown_entry"),
          required(10, "opts", "sk_opts_entry"),
          required(11, "name", "bytes", conv="unix_name"),
          optional(12, "shutdown", "sk_shutdown"),
          optional(13, "file_perms", "file_perms_entry"),
          optional(14, "name_dir", "string"),
          optional(15, "deleted", "bool"),
          optional(16, "ns_id", "uint32"),
          optional(17, "mnt_id", "sint32", default="-1"))

# sk-queues.img: one entry per queued message (a datagram, or a piece of a
# stream), its bytes following the entry
S.message("scm_entry",
          required(1, "type", "uint32"),
          repeated(2, "rights", "uint32"))

S.message("sk_packet_entry",
          required(1, "id_for", "uint32"),
          required(2, "length", "uint32"),
          repeated(4, "scm", "scm_entry"))

# file_entry members this version knows; the others (inet and other
# sockets, inotify, ...) arrive with the issues that dump them and meanwhile
# survive a decode/encode round trip as unknown fields.
S.message("file_entry",
          required(1, "type", "fd_types"),
          required(2, "id", "uint32"),
          optional(3, "reg", "reg_file_entry"),
          optional(8, "efd", "eventfd_file_entry"),
          optional(9, "epfd", "eventpoll_file_entry"),
          optional(10, "sgfd", "signalfd_entry"),
          optional(12, "tfd", "timerfd_entry"),
          optional(16, "usk", "unix_sk_entry"),
          optional(17, "fifo", "fifo_entry"),
          optional(18, "pipe", "pipe_entry"),
          optional(19, "tty", "tty_file_entry"),
          optional(20, "memfd", "memfd_file_entry"))

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

classes = schema.build()
