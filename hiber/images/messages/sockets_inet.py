"""Messages of inet sockets (CRIU's sk-inet.proto and tcp-stream.proto):
the socket in files.img (file_entry.isk), its IP and TCP options, and the
state of a TCP connection in tcp-stream-INO.img."""

from .base import S
from ..schema import optional, repeated, required

S.message("ip_opts_raw_entry",
          optional(1, "hdrincl", "bool"),
          optional(2, "nodefrag", "bool"),
          optional(3, "checksum", "bool"),
          repeated(4, "icmpv_filter", "uint32"))

S.message("ip_opts_entry",
          optional(1, "freebind", "bool"),
          # 2 and 3: reserved by CRIU
          optional(4, "raw", "ip_opts_raw_entry"),
          optional(5, "pktinfo", "bool"),
          optional(6, "tos", "uint32"),
          optional(7, "ttl", "uint32"))

S.message("tcp_opts_entry",
          optional(1, "cork", "bool"),
          optional(2, "nodelay", "bool"),
          optional(3, "keepcnt", "uint32"),
          optional(4, "keepidle", "uint32"),
          optional(5, "keepintvl", "uint32"))

S.message("inet_sk_entry",
          required(1, "id", "uint32"),
          required(2, "ino", "uint32"),
          required(3, "family", "uint32", dict="sk"),
          required(4, "type", "uint32", dict="sk"),
          required(5, "proto", "uint32", dict="sk"),
          required(6, "state", "uint32", dict="sk"),
          required(7, "src_port", "uint32"),
          required(8, "dst_port", "uint32"),
          required(9, "flags", "uint32", hex=True),
          required(10, "backlog", "uint32"),
          # addresses in network byte order, one 32-bit word (IPv4) or four
          repeated(11, "src_addr", "uint32", ipadd=True),
          repeated(12, "dst_addr", "uint32", ipadd=True),
          required(13, "fown", "fown_entry"),
          required(14, "opts", "sk_opts_entry"),
          optional(15, "v6only", "bool"),
          optional(16, "ip_opts", "ip_opts_entry"),
          optional(17, "ifname", "string"),
          optional(18, "ns_id", "uint32"),
          optional(19, "shutdown", "sk_shutdown"),
          optional(20, "tcp_opts", "tcp_opts_entry"))

S.message("tcp_stream_entry",
          required(1, "inq_len", "uint32"),
          required(2, "inq_seq", "uint32"),
          required(3, "outq_len", "uint32"),   # sent and unsent bytes of the send queue
          required(4, "outq_seq", "uint32"),
          required(5, "opt_mask", "uint32", hex=True),  # TCPI_OPT_* bits
          required(6, "snd_wscale", "uint32"),
          required(7, "mss_clamp", "uint32"),
          optional(8, "rcv_wscale", "uint32"),
          optional(9, "timestamp", "uint32"),
          optional(10, "cork", "bool"),        # older images: tcp_opts_entry now
          optional(11, "nodelay", "bool"),
          optional(12, "unsq_len", "uint32"),  # the unsent bytes of the send queue
          optional(13, "snd_wl1", "uint32"),
          optional(14, "snd_wnd", "uint32"),
          optional(15, "max_window", "uint32"),
          optional(16, "rcv_wnd", "uint32"),
          optional(17, "rcv_wup", "uint32"))
