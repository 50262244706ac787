"""Image files: head magic, image magic, length-prefixed protobuf entries.

    IMAGE := [HEAD_MAGIC] MAGIC ENTRY*     ENTRY := LEN:u32le PAYLOAD [EXTRA]

(spec §1.2-§1.3).  Everything that is wrong with a file becomes one
ImageError naming the file and the byte offset.
"""

import io
import os
import struct
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError, EncodeError

from ..errors import ImageError
from . import magic as M
from .messages import classes

U32 = struct.Struct("<I")


@dataclass
class Entry:
    message: object
    extra: bytes | None = None   # raw bytes that follow the entry, if its type has them
    offset: int = 0              # where the entry's length word starts


@dataclass
class Image:
    type: M.ImageType
    entries: list = field(default_factory=list)


# Images whose entries are followed by raw bytes, and how many (spec §1.3).
EXTRA_LENGTH = {
    "PIPES_DATA": lambda m: m.bytes,
    "FIFO_DATA": lambda m: m.bytes,
    "SK_QUEUES": lambda m: m.length,
    # a semaphore set's values, u16 each, padded to 8 bytes (CRIU's ipc_ns.c)
    "IPCNS_SEM": lambda m: (2 * m.nsems + 7) // 8 * 8,
    # a segment's contents inline, padded to 4 bytes, unless in pagemap-shmem
    "IPCNS_SHM": lambda m: 0 if m.in_pagemaps else (m.size + 3) // 4 * 4,
    # the receive queue's bytes, then the send queue's (CRIU's dump_tcp_conn_state)
    "TCP_STREAM": lambda m: m.inq_len + m.outq_len,
}


class QueuedMessages:
    """ipcns-msg-N.img holds two kinds of entry: each queue's ipc_msg_entry,
    then its qnum ipc_msg, each followed by its text padded to 8 bytes
    (CRIU's ipc_ns.c).  Tells the class (and extra length) of the next one."""

    def __init__(self):
        self.messages_left = 0

    def next_entry(self):
        if self.messages_left:
            self.messages_left -= 1
            return classes["ipc_msg"], lambda m: (m.msize + 7) // 8 * 8
        return classes["ipc_msg_entry"], None

    def read(self, message):
        if message.DESCRIPTOR.name == "ipc_msg_entry":
            self.messages_left = message.qnum


class GhostContents:
    """ghost-file-N.img: a ghost_file_entry, then the file's data: all of it
    after the entry, or (chunks, for larger files) each extent holding data
    as a ghost_chunk_entry followed by its bytes (CRIU's files-reg.c)."""

    def __init__(self):
        self.first = True

    def next_entry(self):
        if self.first:
            # None: the rest of the file
            return classes["ghost_file_entry"], lambda m: 0 if m.chunks else None
        return classes["ghost_chunk_entry"], lambda m: m.len

    def read(self, message):
        self.first = False


# Images whose entries are of more than one message: a reader of each.
MIXED_ENTRIES = {"IPCNS_MSG": QueuedMessages, "GHOST_FILE": GhostContents}


def message_class_for(image_type, index):
    """The message class of entry number ``index`` of an image type."""
    if image_type.message is None:
        return None
    # a pagemap starts with its head entry (spec §1.8)
    if image_type.name in ("PAGEMAP", "SHMEM_PAGEMAP") and index == 0:
        return classes["pagemap_head"]
    return classes[image_type.message]


def read_magic(f, path):
    """Read the head/image magic words; return (ImageType, offset of first entry)."""
    first = f.read(4)
    if len(first) < 4:
        raise ImageError(path, 0, "file too short to hold a magic number"
                         if first else "empty file: no magic number")
    (word,) = U32.unpack(first)
    offset = 4
    if word in (M.IMG_COMMON_MAGIC, M.IMG_SERVICE_MAGIC):
        second = f.read(4)
        if len(second) < 4:
            raise ImageError(path, 4, "file ends after the head magic")
        (word,) = U32.unpack(second)
        offset = 8
    image_type = M.BY_MAGIC.get(word)
    if image_type is None:
        raise ImageError(path, offset - 4, f"unknown image magic 0x{word:08x}")
    return image_type, offset


def _read_exact(f, n, path, offset, what):
    data = f.read(n)
    if len(data) != n:
        raise ImageError(path, offset, f"{what} of {n} bytes runs past the end of the "
                         f"file ({len(data)} bytes left)")
    return data


def iter_entries(f, path, image_type, offset):
    """Yield Entry objects from ``f``, positioned at ``offset``, until EOF."""
    index = 0
    extra_length = EXTRA_LENGTH.get(image_type.name)
    mixed = MIXED_ENTRIES[image_type.name]() if image_type.name in MIXED_ENTRIES else None
    while True:
        head = f.read(4)
        if not head:
            return
        if len(head) < 4:
            raise ImageError(path, offset, f"truncated entry length ({len(head)} of 4 bytes)")
        (size,) = U32.unpack(head)
        payload = _read_exact(f, size, path, offset, "entry")
        if mixed is not None:
            cls, extra_length = mixed.next_entry()
        else:
            cls = message_class_for(image_type, index)
        if cls is None:
            raise ImageError(path, offset, f"hiber cannot decode {image_type.name} entries yet")
        message = cls()
        try:
            message.ParseFromString(payload)
            # touch every string so invalid UTF-8 is reported here, not later
            message.SerializeToString()
        except (DecodeError, EncodeError, ValueError, UnicodeError) as e:
            raise ImageError(path, offset, f"bad {cls.DESCRIPTOR.name} entry: {e}") from None
        if mixed is not None:
            mixed.read(message)
        entry = Entry(message, None, offset)
        offset += 4 + size
        if extra_length:
            n = extra_length(message)
            entry.extra = f.read() if n is None else _read_exact(f, n, path, offset,
                                                                 "extra payload")
            offset += len(entry.extra)
        yield entry
        index += 1


def read_image(path, expected=None):
    """Read a whole image file into an Image.

    ``expected`` (an ImageType) is checked against the file's magic; it also
    decides between types that share a magic (PAGEMAP/SHMEM_PAGEMAP).
    """
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ImageError(path, None, f"cannot open: {e.strerror}") from None
    with f:
        return read_image_from(f, path, expected)


def decode_bytes(data, name="<bytes>", expected=None):
    """Like read_image, for an image already in memory; ``name`` is its file name."""
    return read_image_from(io.BytesIO(data), name, expected)


def read_image_from(f, path, expected=None):
    if M.is_raw_file_name(os.path.basename(path)):
        raise ImageError(path, None, "raw image: it holds data, not entries")
    image_type, offset = read_magic(f, path)
    if expected is not None:
        if expected.magic != image_type.magic:
            raise ImageError(path, 0, f"magic 0x{image_type.magic:08x} ({image_type.name}) "
                             f"where a {expected.name} image was expected")
        image_type = expected
    return Image(image_type, list(iter_entries(f, path, image_type, offset)))


def encode_image(image):
    """The bytes of an image file, as CRIU would write them."""
    out = io.BytesIO()
    write_magic(out, image.type)
    for entry in image.entries:
        write_entry(out, entry.message, entry.extra)
    return out.getvalue()


def write_magic(f, image_type):
    if image_type.head == M.HEAD_RAW:
        raise ValueError(f"{image_type.name} is a raw image: it has no entries")
    if image_type.head == M.HEAD_COMMON:
        f.write(U32.pack(M.IMG_COMMON_MAGIC))
    elif image_type.head == M.HEAD_SERVICE:
        f.write(U32.pack(M.IMG_SERVICE_MAGIC))
    f.write(U32.pack(image_type.magic))


def write_entry(f, message, extra=None):
    payload = message.SerializeToString()
    f.write(U32.pack(len(payload)))
    f.write(payload)
    if extra:
        f.write(extra)


def write_image(path, image_type, entries):
    """Write messages (or (message, extra) pairs) as an image file."""
    with open(path, "wb") as f:
        write_magic(f, image_type)
        for entry in entries:
            if isinstance(entry, tuple):
                write_entry(f, *entry)
            elif isinstance(entry, Entry):
                write_entry(f, entry.message, entry.extra)
            else:
                write_entry(f, entry)
