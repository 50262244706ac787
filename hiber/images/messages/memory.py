"""Messages of memory: VMAs, the mm, and the pagemap."""

from .base import HIBER_FIELDS, S
from ..schema import optional, repeated, required

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
