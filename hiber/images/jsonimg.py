"""Whole images <-> crit's JSON: {"magic": NAME, "entries": [...]}.

Extra payloads (pipe data, ...) travel as base64 text in an entry's
``"extra"`` key, as crit writes them.
"""

import base64
import binascii

from ..errors import ImageError
from . import magic as M
from .framing import EXTRA_LENGTH, MIXED_ENTRIES, Entry, Image, encode_image, message_class_for
from .pretty import from_dict, to_dict


def image_to_json(image, pretty=True):
    entries = []
    for entry in image.entries:
        d = to_dict(entry.message, pretty)
        if image.type.name == "TCP_STREAM":  # crit splits it in its two queues
            extra, inq = entry.extra or b"", entry.message.inq_len
            d["extra"] = {"inq": base64.encodebytes(extra[:inq]).decode(),
                          "outq": base64.encodebytes(extra[inq:]).decode()}
        elif image.type.name in EXTRA_LENGTH or entry.extra is not None:
            d["extra"] = base64.encodebytes(entry.extra or b"").decode()
        entries.append(d)
    # crit names a file by its magic; shared magics show the first name
    return {"magic": M.BY_MAGIC[image.type.magic].name, "entries": entries}


def image_from_json(data, source="<json>"):
    """Build an Image from crit-style JSON; errors name the entry index."""
    if not isinstance(data, dict) or "magic" not in data or "entries" not in data:
        raise ImageError(source, None, 'expected an object with "magic" and "entries"')
    image_type = M.BY_NAME.get(data["magic"])
    if image_type is None or image_type.head == M.HEAD_RAW:
        raise ImageError(source, None, f"unknown image magic name {data['magic']!r}")
    if not isinstance(data["entries"], list):
        raise ImageError(source, None, '"entries" must be a list')
    image = Image(image_type)
    mixed = MIXED_ENTRIES[image_type.name]() if image_type.name in MIXED_ENTRIES else None
    for index, item in enumerate(data["entries"]):
        cls = mixed.next_entry()[0] if mixed else message_class_for(image_type, index)
        if cls is None:
            raise ImageError(source, None, f"hiber cannot encode {image_type.name} entries yet")
        item = dict(item) if isinstance(item, dict) else item
        extra = item.pop("extra", None) if isinstance(item, dict) else None
        try:
            message = from_dict(item, cls)
            if isinstance(extra, dict):  # a tcp stream's queues
                extra = b"".join(base64.decodebytes(extra.get(q, "").encode())
                                 for q in ("inq", "outq"))
            elif extra is not None:
                extra = base64.decodebytes(extra.encode())
            message.SerializeToString()  # reports missing required fields
        except (ValueError, TypeError, AttributeError, binascii.Error) as e:
            raise ImageError(source, None, f"entry {index}: {e}") from None
        except Exception as e:  # protobuf's EncodeError and range errors
            raise ImageError(source, None, f"entry {index}: {e}") from None
        if mixed:
            mixed.read(message)
        image.entries.append(Entry(message, extra))
    return image


def json_to_bytes(data, source="<json>"):
    return encode_image(image_from_json(data, source))
