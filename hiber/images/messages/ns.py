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
