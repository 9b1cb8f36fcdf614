"""Avro single-object encoding, byte-compatible with the Java serde (schemas module).

Layout: 0xC3 0x01, the 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing
Canonical Form, then the Avro binary body. The schemas are the self-contained files the Java build
ships (schemas/src/main/resources/curvewatch/avro/history); nothing is redefined here.
"""
import io
import json
import os
import struct
from pathlib import Path

import avro.errors
import avro.io
import avro.schema

MARKER = b"\xc3\x01"
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def repo_schema_dir():
    """The schema history folder of the repository this package sits in (clients/python/curvewatch)."""
    return Path(__file__).resolve().parents[3] / "schemas/src/main/resources/curvewatch/avro/history"


def listed_files(directory):
    """The schema files index.txt lists, in order."""
    return [line.strip() for line in (Path(directory) / "index.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def schema_dir():
    """Where the schemas are: $CURVEWATCH_SCHEMA_DIR, else the repository's folder (run from a
    checkout), else the copy an installed wheel carries (curvewatch/schemas, written by the build
    backend)."""
    env = os.environ.get("CURVEWATCH_SCHEMA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(repo_schema_dir())
    candidates.append(Path(__file__).resolve().parent / "schemas")
    for c in candidates:
        if (c / "index.txt").is_file():
            return c
    raise FileNotFoundError("Curvewatch schemas not found; set CURVEWATCH_SCHEMA_DIR to the folder "
                            "holding index.txt (schemas/src/main/resources/curvewatch/avro/history)")


def canonical_form(schema_json):
    """Avro Parsing Canonical Form, as the avro package writes it (Schema.canonical_form), of a
    schema given as parsed JSON.

    avro 1.11's Python form keeps a primitive type that carries properties as an object
    ({"type":"string"} for {"type":"string","avro.java.string":"String"}, which every string of the
    Java-generated schemas has), where the spec's PRIMITIVES rule and Java's SchemaNormalization
    write "string": such primitives are reduced to their name before avro parses the schema, so
    the fingerprints equal Java's (checked for every schema in test_encoding and PythonClientIT).
    """
    return avro.schema.parse(json.dumps(_simple_primitives(schema_json))).canonical_form


def _simple_primitives(s):
    """The schema with every primitive type written as its bare name (properties dropped)."""
    if isinstance(s, list):
        return [_simple_primitives(b) for b in s]
    if not isinstance(s, dict):
        return s
    t = s["type"]
    if isinstance(t, (dict, list)):
        return _simple_primitives(t)
    if t in _PRIMITIVES:
        return t
    out = dict(s)
    if t in ("record", "error"):
        out["fields"] = [dict(f, type=_simple_primitives(f["type"])) for f in s["fields"]]
    elif t == "array":
        out["items"] = _simple_primitives(s["items"])
    elif t == "map":
        out["values"] = _simple_primitives(s["values"])
    return out


_EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint the Avro spec calls CRC-64-AVRO, as an unsigned 64-bit int."""
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


def with_defaults(schema, datum):
    """datum with every field it lacks set to the schema's default, in nested records too: Python's
    avro writer refuses a missing field even when the schema gives it a default (Java's builders fill
    them), so fields added by a schema version need no change in code that does not use them."""
    if isinstance(schema, avro.schema.RecordSchema) and isinstance(datum, dict):
        out = dict(datum)
        for f in schema.fields:
            if f.name in out:
                out[f.name] = with_defaults(f.type, out[f.name])
            elif f.has_default:
                out[f.name] = f.default
        return out
    if isinstance(schema, avro.schema.ArraySchema) and isinstance(schema.items, avro.schema.RecordSchema) \
            and isinstance(datum, (list, tuple)):
        return [with_defaults(schema.items, x) for x in datum]
    return datum


_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")


def _long(out, n):
    """Avro's zig-zag varint of a long."""
    n = (n << 1) ^ (n >> 63)
    while n & ~0x7F:
        out.append(bytes(((n & 0x7F) | 0x80,)))
        n >>= 7
    out.append(bytes((n,)))


def _fits(schema, datum):
    """Whether datum is of a union branch's type (the first fitting branch is written, as avro does)."""
    kind = schema.type
    if kind == "null":
        return datum is None
    if kind == "boolean":
        return isinstance(datum, bool)
    if kind in ("int", "long"):
        return isinstance(datum, int) and not isinstance(datum, bool)
    if kind in ("float", "double"):
        return isinstance(datum, (int, float)) and not isinstance(datum, bool)
    if kind in ("bytes", "fixed"):
        return isinstance(datum, (bytes, bytearray, memoryview))
    if kind in ("string", "enum"):
        return isinstance(datum, str)
    if kind == "array":
        return isinstance(datum, (list, tuple))
    return isinstance(datum, dict)  # record, map


def writer(schema):
    """A function (out, datum) appending datum's Avro binary encoding to the list `out` of byte chunks:
    the avro package's DatumWriter, byte for byte (tests/test_encoding.py), without its per-bytes
    `struct.pack` copy and its validation walk, which made a 1 MB Capture cost milliseconds."""
    kind = schema.type
    if kind == "null":
        return lambda out, d: None
    if kind == "boolean":
        return lambda out, d: out.append(b"\x01" if d else b"\x00")
    if kind in ("int", "long"):
        return lambda out, d: _long(out, int(d))
    if kind == "float":
        return lambda out, d: out.append(_FLOAT.pack(d))
    if kind == "double":
        return lambda out, d: out.append(_DOUBLE.pack(d))
    if kind == "bytes":
        def write_bytes(out, d):
            _long(out, len(d))
            out.append(d)
        return write_bytes
    if kind == "string":
        def write_string(out, d):
            data = d.encode("utf-8")
            _long(out, len(data))
            out.append(data)
        return write_string
    if kind == "fixed":
        return lambda out, d: out.append(bytes(d))
    if kind == "enum":
        index = {s: i for i, s in enumerate(schema.symbols)}
        return lambda out, d: _long(out, index[d])
    if kind == "array":
        items = writer(schema.items)

        def write_array(out, d):
            if d:
                _long(out, len(d))
                for x in d:
                    items(out, x)
            out.append(b"\x00")
        return write_array
    if kind == "map":
        values = writer(schema.values)

        def write_map(out, d):
            if d:
                _long(out, len(d))
                for k, v in d.items():
                    data = k.encode("utf-8")
                    _long(out, len(data))
                    out.append(data)
                    values(out, v)
            out.append(b"\x00")
        return write_map
    if kind == "union":
        branches = [(b, writer(b)) for b in schema.schemas]

        def write_union(out, d):
            for i, (b, w) in enumerate(branches):
                if _fits(b, d):
                    _long(out, i)
                    return w(out, d)
            raise avro.errors.AvroTypeException(schema, d)
        return write_union
    if kind in ("record", "error"):
        fields = [(f.name, writer(f.type)) for f in schema.fields]

        def write_record(out, d):
            for name, w in fields:
                w(out, d[name])
        return write_record
    raise TypeError(f"unsupported Avro type {kind}")


class RecordCodec:
    """Encoder/decoder of one top-level record type."""

    def __init__(self, name, schema_json):
        self.name = name
        self.schema = avro.schema.parse(json.dumps(schema_json))
        self.fingerprint = crc64_avro(canonical_form(schema_json).encode("utf-8"))
        self.header = MARKER + self.fingerprint.to_bytes(8, "little")
        self._write = writer(self.schema)
        self._reader = avro.io.DatumReader(self.schema, self.schema)
        self.older = {}  # fingerprint bytes of an earlier version -> reader resolving it to this one

    def read_older(self, schema_json):
        """Also decode records written with an earlier version of this record (Avro schema resolution:
        fields it lacks get this version's defaults), as the Java serde does."""
        writer_schema = avro.schema.parse(json.dumps(schema_json))
        fingerprint = crc64_avro(canonical_form(schema_json).encode("utf-8")).to_bytes(8, "little")
        self.older[fingerprint] = avro.io.DatumReader(writer_schema, self.schema)

    def encode(self, record: dict) -> bytes:
        out = [self.header]
        try:
            self._write(out, with_defaults(self.schema, record))
        except (KeyError, TypeError, AttributeError, struct.error) as e:
            raise avro.errors.AvroTypeException(self.schema, record) from e
        return b"".join(out)

    def decode(self, data: bytes) -> dict:
        if len(data) < 10 or data[:2] != MARKER:
            raise ValueError(f"not Avro single-object encoding (first bytes {data[:2].hex()})")
        reader = self._reader if data[2:10] == self.header[2:] else self.older.get(data[2:10])
        if reader is None:
            raise ValueError(f"fingerprint {data[2:10][::-1].hex()} is not {self.name}'s {self.fingerprint:016x} "
                             "nor one of its earlier versions")
        return reader.read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))


_codecs = {}


def codec(name: str) -> RecordCodec:
    """Codec for a top-level record by simple name (Capture, RunInfo, WeightSnapshot, ...)."""
    if name not in _codecs:
        d = schema_dir()
        files = listed_files(d)
        newest = sorted((f for f in files if f.split(".v")[0] == name),
                        key=lambda f: int(f.rsplit(".v", 1)[1].split(".")[0]))
        if not newest:
            raise KeyError(f"no shipped schema for record {name!r} in {d}")
        c = RecordCodec(name, json.loads((d / newest[-1]).read_text()))
        for f in newest[:-1]:
            c.read_older(json.loads((d / f).read_text()))
        _codecs[name] = c
    return _codecs[name]
