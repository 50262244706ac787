"""Messages of netlink and packet sockets (CRIU's sk-netlink.proto and
packet-sock.proto)."""

from .base import S
from ..schema import optional, repeated, required

S.message("netlink_sk_entry",
          required(1, "id", "uint32"),
          required(2, "ino", "uint32"),
          required(3, "protocol", "uint32"),
          required(4, "state", "uint32"),
          required(6, "flags", "uint32", hex=True),
          required(7, "portid", "uint32"),
          repeated(8, "groups", "uint32"),
          required(9, "dst_portid", "uint32"),
          required(10, "dst_group", "uint32"),
          required(11, "fown", "fown_entry"),
          required(12, "opts", "sk_opts_entry"),
          optional(13, "ns_id", "uint32"))

S.message("packet_mclist",
          required(1, "index", "uint32"),
          required(2, "type", "uint32"),
          required(3, "addr", "bytes"))

S.message("packet_ring",
          required(1, "block_size", "uint32"),
          required(2, "block_nr", "uint32"),
          required(3, "frame_size", "uint32"),
          required(4, "frame_nr", "uint32"),
          required(5, "retire_tmo", "uint32"),
          required(6, "sizeof_priv", "uint32"),
          required(7, "features", "uint32"))

S.message("packet_sock_entry",
          required(1, "id", "uint32"),
          required(2, "type", "uint32"),
          required(3, "protocol", "uint32"),
          required(4, "flags", "uint32", hex=True),
          required(5, "ifindex", "uint32"),
          required(6, "fown", "fown_entry"),
          required(7, "opts", "sk_opts_entry"),
          required(8, "version", "uint32"),
          required(9, "reserve", "uint32"),
          required(10, "aux_data", "bool"),
          required(11, "orig_dev", "bool"),
          required(12, "vnet_hdr", "bool"),
          required(13, "loss", "bool"),
          required(14, "timestamp", "uint32"),
          required(15, "copy_thresh", "uint32"),
          repeated(16, "mclist", "packet_mclist"),
          optional(17, "fanout", "uint32", default="4294967295"),
          optional(18, "rx_ring", "packet_ring"),
          optional(19, "tx_ring", "packet_ring"),
          optional(20, "ns_id", "uint32"))
