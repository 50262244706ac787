"""Protobuf messages <-> the JSON-ready dicts crit prints and reads.

The rules reproduce ``crit decode --pretty`` so users can switch tools:
* enums print as their names, bytes as base64 (with the trailing newline
  of Python's ``encodebytes``);
* in pretty mode an integer marked ``hex`` prints as ``"0x.."``, and a
  message marked hex passes that on to every integer inside it;
* ``flags`` fields print as ``"A | B | 0x.."`` from the named table, or as
  hex when the table is unknown; ``dict`` fields print a name when known;
  ``dev`` fields print ``"major:minor"``.
Reading accepts both the pretty and the plain form of every field.
"""

import base64
import binascii
import ipaddress
import os
import quopri
import struct

from google.protobuf.descriptor import FieldDescriptor as FD

from .messages import schema

FLAG_TABLES = {
    "mmap.prot": [("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)],
    "mmap.flags": [("MAP_SHARED", 0x1), ("MAP_PRIVATE", 0x2), ("MAP_DROPPABLE", 0x8),
                   ("MAP_ANON", 0x20), ("MAP_GROWSDOWN", 0x100)],
    "mmap.status": [
        ("VMA_AREA_NONE", 0), ("VMA_AREA_REGULAR", 1 << 0), ("VMA_AREA_STACK", 1 << 1),
        ("VMA_AREA_VSYSCALL", 1 << 2), ("VMA_AREA_VDSO", 1 << 3), ("VMA_AREA_HEAP", 1 << 5),
        ("VMA_FILE_PRIVATE", 1 << 6), ("VMA_FILE_SHARED", 1 << 7),
        ("VMA_ANON_SHARED", 1 << 8), ("VMA_ANON_PRIVATE", 1 << 9),
        ("VMA_AREA_SYSVIPC", 1 << 10), ("VMA_AREA_SOCKET", 1 << 11),
        ("VMA_AREA_VVAR", 1 << 12), ("VMA_AREA_AIORING", 1 << 13),
        ("VMA_AREA_MEMFD", 1 << 14), ("VMA_AREA_SHSTK", 1 << 15),
        # 1 << 16 (VMA_AREA_GUARD) has no name in crit 4.2: it prints 0x10000
        ("VMA_AREA_UPROBES", 1 << 17), ("VMA_UNSUPP", 1 << 31)],
    "rfile.flags": [
        ("O_WRONLY", 0o1), ("O_RDWR", 0o2), ("O_CREAT", 0o100), ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400), ("O_TRUNC", 0o1000), ("O_APPEND", 0o2000),
        ("O_NONBLOCK", 0o4000), ("O_DSYNC", 0o10000), ("FASYNC", 0o20000),
        ("O_DIRECT", 0o40000), ("O_LARGEFILE", 0o100000), ("O_DIRECTORY", 0o200000),
        ("O_NOFOLLOW", 0o400000), ("O_NOATIME", 0o1000000), ("O_CLOEXEC", 0o2000000)],
    "pmap.flags": [("PE_PARENT", 1 << 0), ("PE_LAZY", 1 << 1), ("PE_PRESENT", 1 << 2)],
    "seals.flags": [("F_SEAL_SEAL", 0x1), ("F_SEAL_SHRINK", 0x2), ("F_SEAL_GROW", 0x4),
                    ("F_SEAL_WRITE", 0x8), ("F_SEAL_FUTURE_WRITE", 0x10)],
}

# Names crit gives to the values of "dict" fields, by field name.
DICT_TABLES = {
    "gen": {"task_state": {1: "Alive", 2: "Dead", 3: "Stopped", 6: "Zombie"}},
    # socket families, types and TCP-style states, as crit's sk_maps
    "sk": {"family": {1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET"},
           "type": {1: "STREAM", 2: "DGRAM", 3: "RAW", 5: "SEQPACKET", 10: "PACKET"},
           "state": {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
                     5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
                     9: "LAST_ACK", 10: "LISTEN"},
           "proto": {0: "IP", 6: "TCP", 17: "UDP", 136: "UDPLITE"}},
}

MINORBITS = 20  # the kernel's dev_t encoding as CRIU stores it


def flags_to_text(value, table):
    names = [name for name, bit in table if value & bit]
    rest = value & ~sum(bit for _, bit in table)
    if rest:
        names.append(f"0x{rest:x}")
    return " | ".join(names)


def text_to_flags(text, table):
    if text.strip() == "":
        return 0
    bits = dict(table)
    total = 0
    for part in text.split("|"):
        part = part.strip()
        total |= bits[part] if part in bits else int(part, 0)
    return total


def _display(field):
    return schema.display_of(field.containing_type.name, field.name)


def _scalar_to_json(field, value, pretty, in_hex):
    if field.type == FD.TYPE_BYTES:
        if _display(field).get("conv") == "unix_name":
            return quopri.encodestring(value).decode()
        return base64.encodebytes(value).decode()
    if field.type == FD.TYPE_ENUM:
        known = field.enum_type.values_by_number.get(value)
        return known.name if known else value
    if field.type in (FD.TYPE_BOOL, FD.TYPE_STRING) or not pretty:
        return value
    shown = _display(field)
    if in_hex or shown.get("hex"):
        return f"0x{value:x}"
    if shown.get("dev"):
        return f"{value >> MINORBITS}:{value & ((1 << MINORBITS) - 1)}"
    if shown.get("odev"):
        return f"{os.major(value)}:{os.minor(value)}"
    if "flags" in shown:
        table = FLAG_TABLES.get(shown["flags"])
        return flags_to_text(value, table) if table else f"0x{value:x}"
    if "dict" in shown:
        return DICT_TABLES[shown["dict"]].get(field.name, {}).get(value, value)
    return value


def _address_to_json(words):
    """An address kept as 32-bit words in network order (an inet socket's
    src_addr), as crit prints it: one word is IPv4, four IPv6."""
    raw = struct.pack(f"={len(words)}I", *words)
    return str(ipaddress.ip_address(raw[:4] if len(words) == 1 else raw[:16]))


def _address_from_json(text):
    raw = ipaddress.ip_address(text).packed
    return list(struct.unpack(f"={len(raw) // 4}I", raw))


def to_dict(message, pretty=True, in_hex=False):
    """A message as crit shows it: fields in number order, set fields only."""
    out = {}
    for field, value in message.ListFields():
        field_hex = in_hex or bool(_display(field).get("hex"))
        if field.type == FD.TYPE_MESSAGE:
            if field.is_repeated:
                out[field.name] = [to_dict(v, pretty, field_hex) for v in value]
            else:
                out[field.name] = to_dict(value, pretty, field_hex)
        elif field.is_repeated and pretty and _display(field).get("ipadd"):
            out[field.name] = [_address_to_json(value)]
        elif field.is_repeated:
            out[field.name] = [_scalar_to_json(field, v, pretty, field_hex) for v in value]
        else:
            out[field.name] = _scalar_to_json(field, value, pretty, field_hex)
    return out


def _scalar_from_json(field, value):
    if field.type == FD.TYPE_BYTES:
        if _display(field).get("conv") == "unix_name":
            return quopri.decodestring(value.encode())
        try:
            return base64.decodebytes(value.encode())
        except binascii.Error as e:
            raise ValueError(f"{field.name}: bad base64: {e}") from None
    if field.type == FD.TYPE_ENUM:
        if isinstance(value, int):
            return value
        known = field.enum_type.values_by_name.get(value)
        if known is None:
            raise ValueError(f"{field.name}: unknown value {value!r}")
        return known.number
    if field.type == FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"{field.name}: expected true or false, got {value!r}")
        return value
    if field.type == FD.TYPE_STRING:
        if not isinstance(value, str):
            raise ValueError(f"{field.name}: expected a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{field.name}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    shown = _display(field)
    if shown.get("dev") or shown.get("odev"):
        major, minor = (int(x) for x in value.split(":"))
        if shown.get("odev"):
            return os.makedev(major, minor)
        return major << MINORBITS | minor
    if "flags" in shown and shown["flags"] in FLAG_TABLES:
        return text_to_flags(value, FLAG_TABLES[shown["flags"]])
    if "dict" in shown:
        names = DICT_TABLES[shown["dict"]].get(field.name, {})
        for number, name in names.items():
            if name == value:
                return number
    return int(value, 0)


def from_dict(data, message_class):
    """Build a message from a crit-style dict (pretty or plain)."""
    message = message_class()
    fill_from_dict(message, data)
    return message


def fill_from_dict(message, data):
    if not isinstance(data, dict):
        raise ValueError(f"{message.DESCRIPTOR.name}: expected an object, got {data!r}")
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in data.items():
        field = fields.get(name)
        if field is None:
            raise ValueError(f"{message.DESCRIPTOR.name} has no field {name!r}")
        if field.is_repeated:
            if not isinstance(value, list):
                raise ValueError(f"{name}: expected a list")
            target = getattr(message, name)
            if value and isinstance(value[0], str) and _display(field).get("ipadd"):
                target.extend(_address_from_json(value[0]))
                continue
            for item in value:
                if field.type == FD.TYPE_MESSAGE:
                    fill_from_dict(target.add(), item)
                else:
                    target.append(_scalar_from_json(field, item))
        elif field.type == FD.TYPE_MESSAGE:
            sub = getattr(message, name)
            sub.SetInParent()  # present even when empty, like "plugins_entry": {}
            fill_from_dict(sub, value)
        else:
            setattr(message, name, _scalar_from_json(field, value))
