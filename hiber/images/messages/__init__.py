"""The CRIU v4.2 image messages, written from shared/spec/criu-image-format.md.

Numbers, types and labels follow the spec section named above each group;
they decide wire compatibility with CRIU and crit.  Display options (hex,
flags, dict, dev) reproduce how crit prints each field in ``decode --pretty``.
"""

from .base import HIBER_FIELDS, schema  # noqa: F401

# each module adds its messages to the schema (the order does not matter:
# types are resolved when the schema is built)
from . import cgroup, files, memory, ns, rpc, sockets, sockets_inet, sockets_more, task  # noqa: E402,F401

classes = schema.build()
