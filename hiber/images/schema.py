"""A tiny declarative layer for proto2 schemas.

CRIU describes its images with ``.proto`` files.  We describe the same
messages in Python tables (see ``messages.py``) and turn them into real
protobuf descriptors at import time, so there is no code generation step
and no generated file to keep in sync.  The wire format is what matters for
compatibility with CRIU: field numbers, types and labels are taken from the
image-format spec.

CRIU's ``.proto`` files also carry a custom option ``(criu).hex/flags/dict/
dev/...`` that only changes how crit prints a field.  It has no wire effect,
so instead of a protobuf extension we keep it in ``Field.display`` and let
``pretty.py`` read it from ``display_of()``.
"""

from dataclasses import dataclass, field as dc_field

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FDP = descriptor_pb2.FieldDescriptorProto

SCALAR_TYPES = {
    "uint32": FDP.TYPE_UINT32,
    "uint64": FDP.TYPE_UINT64,
    "int32": FDP.TYPE_INT32,
    "int64": FDP.TYPE_INT64,
    "sint32": FDP.TYPE_SINT32,
    "sint64": FDP.TYPE_SINT64,
    "fixed32": FDP.TYPE_FIXED32,
    "fixed64": FDP.TYPE_FIXED64,
    "bool": FDP.TYPE_BOOL,
    "string": FDP.TYPE_STRING,
    "bytes": FDP.TYPE_BYTES,
}

LABELS = {
    "required": FDP.LABEL_REQUIRED,
    "optional": FDP.LABEL_OPTIONAL,
    "repeated": FDP.LABEL_REPEATED,
}

PACKAGE = "criu"


@dataclass
class Field:
    number: int
    name: str
    type: str  # a scalar name from SCALAR_TYPES, or a message/enum name
    label: str
    default: str | None = None
    # crit display options: hex=True, flags="mmap.prot", dict="gen",
    # dev=True, odev=True, ipadd=True, conv="unix_name"
    display: dict = dc_field(default_factory=dict)


def _field(label, number, name, type_, default=None, **display):
    return Field(number, name, type_, label, default, display)


def required(number, name, type_, default=None, **display):
    return _field("required", number, name, type_, default, **display)


def optional(number, name, type_, default=None, **display):
    return _field("optional", number, name, type_, default, **display)


def repeated(number, name, type_, **display):
    return _field("repeated", number, name, type_, None, **display)


class Schema:
    """Collects enums and messages, then builds one descriptor file."""

    def __init__(self, file_name):
        self._file = descriptor_pb2.FileDescriptorProto(
            name=file_name, package=PACKAGE, syntax="proto2")
        self._enums = {}          # enum name -> full type name
        self._nested_enums = {}   # message name -> [(enum name, values)]
        self._messages = {}
        self._display = {}
        self._classes = None

    def enum(self, name, nested_in=None, **values):
        """Declare an enum; ``nested_in`` puts it inside a message.

        Enum value names share one scope per package in protobuf, so an
        enum whose value names clash with another's (``UNKNOWN``) lives
        inside the message that uses it.  Only value names reach crit's
        JSON, so nesting changes nothing a user sees.
        """
        if nested_in is None:
            self._add_enum(self._file.enum_type, name, values)
            self._enums[name] = f".{PACKAGE}.{name}"
        else:
            self._nested_enums.setdefault(nested_in, []).append((name, values))
            self._enums[name] = f".{PACKAGE}.{nested_in}.{name}"

    @staticmethod
    def _add_enum(container, name, values):
        e = container.add(name=name)
        for value_name, number in values.items():
            e.value.add(name=value_name, number=number)

    def message(self, name, *fields):
        numbers = [f.number for f in fields]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"{name}: duplicate field number")
        self._messages[name] = fields
        m = self._file.message_type.add(name=name)
        for enum_name, values in self._nested_enums.get(name, []):
            self._add_enum(m.enum_type, enum_name, values)
        for f in fields:
            fd = m.field.add(name=f.name, number=f.number, label=LABELS[f.label])
            if f.type in SCALAR_TYPES:
                fd.type = SCALAR_TYPES[f.type]
            elif f.type in self._enums:
                fd.type = FDP.TYPE_ENUM
                fd.type_name = self._enums[f.type]
            else:
                # forward references to messages are allowed: the pool
                # resolves type_name when the file is added
                fd.type = FDP.TYPE_MESSAGE
                fd.type_name = f".{PACKAGE}.{f.type}"
            if f.default is not None:
                fd.default_value = f.default
            if f.display:
                self._display[(name, f.name)] = f.display

    def build(self):
        """Return {message name: generated class}."""
        if self._classes is None:
            pool = descriptor_pool.DescriptorPool()
            pool.Add(self._file)
            self._classes = {
                name: message_factory.GetMessageClass(
                    pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
                for name in self._messages
            }
        return self._classes

    def display_of(self, message_name, field_name):
        return self._display.get((message_name, field_name), {})

    def proto_text(self):
        """The schema as ``.proto`` source, for users who want to run protoc."""
        def enum_text(e, pad):
            return ([f"{pad}enum {e.name} {{"]
                    + [f"{pad}\t{v.name} = {v.number};" for v in e.value] + [f"{pad}}}"])

        lines = ['syntax = "proto2";', f"package {PACKAGE};", ""]
        for e in self._file.enum_type:
            lines += enum_text(e, "") + [""]
        by_name = {m.name: m for m in self._file.message_type}
        for name, fields in self._messages.items():
            lines.append(f"message {name} {{")
            for e in by_name[name].enum_type:
                lines += enum_text(e, "\t")
            for f in fields:
                default = f" [default = {f.default}]" if f.default is not None else ""
                lines.append(f"\t{f.label} {f.type} {f.name} = {f.number}{default};")
            lines += ["}", ""]
        return "\n".join(lines)
