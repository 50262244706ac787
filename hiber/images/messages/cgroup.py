"""Messages of cgroup.img: the cgroup sets the tree's tasks live in, and the
controllers' directories with the properties CRIU saves (CRIU's
images/cgroup.proto; one CgroupEntry per image)."""

from .base import S
from ..schema import optional, repeated, required

S.message("cgroup_perms",
          required(1, "mode", "uint32"),
          required(2, "uid", "uint32"),
          required(3, "gid", "uint32"))

S.message("cgroup_prop_entry",
          required(1, "name", "string"),
          required(2, "value", "string"),
          optional(3, "perms", "cgroup_perms"))

S.message("cgroup_dir_entry",
          required(1, "dir_name", "string"),
          repeated(2, "children", "cgroup_dir_entry"),
          repeated(3, "properties", "cgroup_prop_entry"),
          optional(4, "dir_perms", "cgroup_perms"))

S.message("cg_controller_entry",
          repeated(1, "cnames", "string"),
          repeated(2, "dirs", "cgroup_dir_entry"),
          optional(3, "is_threaded", "bool"))

S.message("cg_member_entry",
          required(1, "name", "string"),
          required(2, "path", "string"),
          optional(3, "cgns_prefix", "uint32"))

S.message("cg_set_entry",
          required(1, "id", "uint32"),
          repeated(2, "ctls", "cg_member_entry"))

S.message("cgroup_entry",
          repeated(1, "sets", "cg_set_entry"),
          repeated(2, "controllers", "cg_controller_entry"))
