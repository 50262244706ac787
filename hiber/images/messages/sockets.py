"""Messages of sockets: options, unix sockets, queued packets."""

from .base import HIBER_FIELDS, S
from ..schema import optional, repeated, required

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
          repeated(4, "scm", "scm_entry"),
          # hiber's own: the address a datagram came from, as recvfrom()
          # gives it to the reader (CRIU reserves 3, "addr", and keeps none):
          # absent for a nameless sender
          optional(HIBER_FIELDS, "sender", "bytes", conv="unix_name"))
