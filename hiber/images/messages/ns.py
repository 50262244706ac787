"""Messages of the namespaces' images: utsns-N.img (CRIU's utsns.proto) and
the IPC namespace's ipcns-var/shm/sem/msg-N.img (ipc-var, ipc-desc, ipc-shm,
ipc-sem, ipc-msg.proto)."""

from .base import S
from ..schema import optional, repeated, required

S.message("utsns_entry",
          required(1, "nodename", "string"),
          required(2, "domainname", "string"))

S.message("ipc_var_entry",
          repeated(1, "sem_ctls", "uint32"),
          required(2, "msg_ctlmax", "uint32"),
          required(3, "msg_ctlmnb", "uint32"),
          required(4, "msg_ctlmni", "uint32"),
          required(5, "auto_msgmni", "uint32"),
          required(6, "shm_ctlmax", "uint64"),
          required(7, "shm_ctlall", "uint64"),
          required(8, "shm_ctlmni", "uint32"),
          required(9, "shm_rmid_forced", "uint32"),
          required(10, "mq_queues_max", "uint32"),
          required(11, "mq_msg_max", "uint32"),
          required(12, "mq_msgsize_max", "uint32"),
          optional(13, "mq_msg_default", "uint32"),
          optional(14, "mq_msgsize_default", "uint32"),
          optional(15, "msg_next_id", "uint32"),
          optional(16, "sem_next_id", "uint32"),
          optional(17, "shm_next_id", "uint32"))

S.message("ipc_desc_entry",
          required(1, "key", "uint32"),
          required(2, "uid", "uint32"),
          required(3, "gid", "uint32"),
          required(4, "cuid", "uint32"),
          required(5, "cgid", "uint32"),
          required(6, "mode", "uint32"),
          required(7, "id", "uint32"))

S.message("ipc_shm_entry",
          required(1, "desc", "ipc_desc_entry"),
          required(2, "size", "uint64"),
          optional(3, "in_pagemaps", "bool"),
          optional(4, "hugetlb_flag", "uint32"))

S.message("ipc_sem_entry",
          required(1, "desc", "ipc_desc_entry"),
          required(2, "nsems", "uint32"))

S.message("ipc_msg",
          required(1, "mtype", "uint64"),
          required(2, "msize", "uint32"))

S.message("ipc_msg_entry",
          required(1, "desc", "ipc_desc_entry"),
          required(2, "qbytes", "uint32"),
          required(3, "qnum", "uint32"))

# ---- network namespace: netdev-N.img, netns-N.img (netdev.proto, sysctl.proto)

S.enum("SysctlType", CTL_STR=5, CTL_32=6)
S.enum("nd_type", LOOPBACK=1, VETH=2, TUN=3, EXTLINK=4, VENET=5, BRIDGE=6, MACVLAN=7, SIT=8)

S.message("sysctl_entry",
          required(1, "type", "SysctlType"),
          optional(2, "iarg", "int32"),
          optional(3, "sarg", "string"))

S.message("net_device_entry",
          required(1, "type", "nd_type"),
          required(2, "ifindex", "uint32"),
          required(3, "mtu", "uint32"),
          required(4, "flags", "uint32", hex=True),
          required(5, "name", "string"),
          optional(7, "address", "bytes"),
          repeated(8, "conf", "int32"),
          repeated(9, "conf4", "sysctl_entry"),
          repeated(10, "conf6", "sysctl_entry"),
          optional(12, "peer_ifindex", "uint32"),
          optional(13, "peer_nsid", "uint32"),
          optional(14, "master", "uint32"))

S.message("netns_id",
          required(1, "target_ns_id", "uint32"),
          required(2, "netnsid_value", "int32"))

S.message("netns_entry",
          repeated(1, "def_conf", "int32"),
          repeated(2, "all_conf", "int32"),
          repeated(3, "def_conf4", "sysctl_entry"),
          repeated(4, "all_conf4", "sysctl_entry"),
          repeated(5, "def_conf6", "sysctl_entry"),
          repeated(6, "all_conf6", "sysctl_entry"),
          repeated(7, "nsids", "netns_id"),
          optional(8, "ext_key", "string"),
          repeated(9, "unix_conf", "sysctl_entry"),
          repeated(10, "ipv4_sysctl", "sysctl_entry"))
