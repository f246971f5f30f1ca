"""A protobuf-wire-format-aware mutation engine (no schema needed, numpy-free).

`parse` reads serialized bytes into `Field`s (length-delimited fields that
parse as messages become nested field lists, recursively), `serialize`
writes them back. `Mutator.mutate` applies one to four mutations to a seed:

- varints set to boundary values (0, 2^31, 2^32 - 1, 2^63 - 1, 2^64 - 1, ...);
- fixed 32/64-bit values set to NaN, infinities, -0.0, denormals;
- length-delimited payloads replaced, truncated, extended, emptied or taken
  from another seed (type confusion);
- declared lengths that lie (huge, or off by a few bytes);
- fields duplicated (repeated / last-one-wins / two members of a oneof),
  deleted, given another wire type, or new field numbers added;
- deep nesting: a submessage wrapped in itself, or a `Nest` wrapped in
  list/tuple/dict/named-tuple levels, up to past protobuf's limit of 100;
- byte-level noise over the whole message: bit flips, inserted, deleted or
  duplicated spans, truncation, and the concatenation of two seeds (which
  protobuf parses as a merge).

Everything is drawn from the `random.Random` it is given: a seed gives the
same messages every run.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from typing import Sequence, Union

VARINT, I64, LEN, I32 = 0, 1, 2, 5
MAX_PARSE_DEPTH = 40

INTERESTING_VARINTS = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 100, 127, 128, 255, 256, 1000, 4095, 4096,
                       65535, 65536, 2**20, 2**24, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**53, 2**62,
                       2**63 - 1, 2**63, 2**64 - 1)
INTERESTING_F32 = (struct.pack("<f", float("nan")), struct.pack("<f", float("inf")), struct.pack("<f", float("-inf")),
                   struct.pack("<f", -0.0), struct.pack("<I", 1), struct.pack("<f", 3.4e38), b"\xff\xff\xff\xff")
INTERESTING_F64 = (struct.pack("<d", float("nan")), struct.pack("<d", float("inf")), struct.pack("<d", -0.0),
                   struct.pack("<Q", 1), struct.pack("<d", 1e308), b"\xff" * 8)


@dataclasses.dataclass
class Field:
    """One field on the wire: number, wire type and value (int, bytes, or a list of Fields for a message).

    `declared` overrides the length written for a LEN field (a lying length prefix).
    """

    number: int
    wire: int
    value: Union[int, bytes, list]
    declared: int | None = None


def encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def parse(data: bytes, depth: int = 0) -> list[Field] | None:
    """The fields of `data`, or None when it is not a well-formed message."""
    fields, pos = [], 0
    try:
        while pos < len(data):
            key, pos = _read_varint(data, pos)
            number, wire = key >> 3, key & 7
            if number == 0:
                return None
            if wire == VARINT:
                value, pos = _read_varint(data, pos)
            elif wire in (I64, I32):
                size = 8 if wire == I64 else 4
                if pos + size > len(data):
                    return None
                value, pos = data[pos:pos + size], pos + size
            elif wire == LEN:
                length, pos = _read_varint(data, pos)
                if pos + length > len(data):
                    return None
                payload, pos = data[pos:pos + length], pos + length
                sub = parse(payload, depth + 1) if payload and depth < MAX_PARSE_DEPTH else None
                value = sub if sub else payload
            else:
                return None
            fields.append(Field(number, wire, value))
    except ValueError:
        return None
    return fields


def serialize(fields: Sequence[Field]) -> bytes:
    out = bytearray()
    for f in fields:
        out += encode_varint(f.number << 3 | f.wire)
        if f.wire == VARINT:
            out += encode_varint(f.value if isinstance(f.value, int) else len(f.value))
        elif f.wire in (I64, I32):
            size = 8 if f.wire == I64 else 4
            raw = f.value if isinstance(f.value, bytes) else bytes(size)
            out += raw[:size].ljust(size, b"\0")
        else:
            payload = serialize(f.value) if isinstance(f.value, list) else \
                (f.value if isinstance(f.value, bytes) else encode_varint(f.value))
            out += encode_varint(len(payload) if f.declared is None else f.declared)
            out += payload
    return bytes(out)


def _wrap_nest(nest: list[Field], kind: str) -> list[Field]:
    """A Nest (as fields) holding `nest` one level down: Nest.list/tuple (3/4) -> NestSequence.values (1);
    Nest.dict (5) -> NestMapping.entries (1) -> NestEntry{key (1), value (2)}; Nest.named_tuple (6) ->
    NamedTuple{type_name (1), fields (2) -> NestEntry}."""
    entry = [Field(1, LEN, b"k"), Field(2, LEN, nest)]
    if kind == "list":
        return [Field(3, LEN, [Field(1, LEN, nest)])]
    if kind == "tuple":
        return [Field(4, LEN, [Field(1, LEN, nest)])]
    if kind == "dict":
        return [Field(5, LEN, [Field(1, LEN, entry)])]
    return [Field(6, LEN, [Field(1, LEN, b"T"), Field(2, LEN, entry)])]


def _messages(fields: list[Field], found: list) -> list:
    """Every field list (message) in the tree, the top one first."""
    found.append(fields)
    for f in fields:
        if isinstance(f.value, list):
            _messages(f.value, found)
    return found


class Mutator:
    """Mutates seed messages; `seeds` also feed splices and payload swaps.

    Args:
      rng: the source of every choice.
      donors: serialized messages whose parts are spliced into others (any RPC's).
    """

    def __init__(self, rng: random.Random, donors: Sequence[bytes]):
        self.rng = rng
        self.donors = list(donors)
        self._payloads = [f.value for d in self.donors for m in _messages(parse(d) or [], [])
                          for f in m if f.wire == LEN and isinstance(f.value, bytes)] or [b""]

    def mutate(self, seed: bytes) -> bytes:
        """One mutant of `seed`: 1 to 4 structural mutations (when it parses), sometimes byte noise on top."""
        rng = self.rng
        count = rng.choice((1, 1, 2, 2, 3, 4))
        fields = parse(seed) if rng.random() < 0.85 else None
        if fields is None:
            data = seed
            for _ in range(count):
                data = self._bytes(data)
            return data
        for _ in range(count):
            self._structural(fields)
        data = serialize(fields)
        return self._bytes(data) if rng.random() < 0.15 else data

    # ---------------------------------------------------------------- structural

    def _structural(self, fields: list[Field]) -> None:
        rng = self.rng
        messages = _messages(fields, [])
        message = rng.choice(messages)
        if not message or rng.random() < 0.1:
            message.append(self._random_field())
            return
        index = rng.randrange(len(message))
        f = message[index]
        op = rng.random()
        if op < 0.08:
            del message[index]
        elif op < 0.16:
            message.insert(rng.randrange(len(message) + 1), dataclasses.replace(f))
        elif op < 0.22:
            message[index] = self._random_field(f.number)
        elif op < 0.27 and isinstance(f.value, list):
            self._deepen(message, index)
        elif f.wire == VARINT:
            f.value = rng.choice(INTERESTING_VARINTS) if rng.random() < 0.8 else \
                rng.getrandbits(rng.choice((8, 32, 64)))
        elif f.wire == I32:
            f.value = rng.choice(INTERESTING_F32)
        elif f.wire == I64:
            f.value = rng.choice(INTERESTING_F64)
        else:
            self._mutate_len(f)

    def _mutate_len(self, f: Field) -> None:
        rng = self.rng
        op = rng.random()
        payload = serialize(f.value) if isinstance(f.value, list) else f.value
        if op < 0.1:
            f.declared = rng.choice((len(payload) + 1, len(payload) + 7, max(len(payload) - 1, 0), 2**31, 2**62,
                                     2**64 - 1))
        elif op < 0.35:
            f.value = payload[:rng.randrange(len(payload) + 1)]
        elif op < 0.5:
            f.value = payload + rng.randbytes(rng.choice((1, 3, 4, 8, 64)))
        elif op < 0.6:
            f.value = b""
        elif op < 0.8:
            f.value = rng.choice(self._payloads)
        elif op < 0.9:
            f.value = payload * rng.choice((2, 3, 16))
        else:
            f.value = rng.randbytes(rng.choice((1, 4, 12, 100, 5000)))

    def _deepen(self, message: list[Field], index: int) -> None:
        """Wraps message[index] many levels deep: in itself, or as a Nest in list/tuple/dict/named-tuple levels."""
        rng = self.rng
        f = message[index]
        depth = rng.choice((5, 20, 23, 24, 25, 26, 48, 49, 50, 51, 99, 100, 101, 150))
        if rng.random() < 0.3:
            inner = dataclasses.replace(f)
            for _ in range(depth):
                inner = Field(f.number, LEN, [inner])
            message[index] = inner
            return
        nest = list(f.value) if isinstance(f.value, list) else []
        kind = rng.choice(("list", "tuple", "dict", "named_tuple"))
        for _ in range(depth):
            nest = _wrap_nest(nest, kind)
        message[index] = Field(f.number, LEN, nest)

    def _random_field(self, number: int | None = None) -> Field:
        rng = self.rng
        number = number or rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 100, 2**29 - 1))
        wire = rng.choice((VARINT, I64, LEN, I32))
        if wire == VARINT:
            return Field(number, wire, rng.choice(INTERESTING_VARINTS))
        if wire == I64:
            return Field(number, wire, rng.choice(INTERESTING_F64))
        if wire == I32:
            return Field(number, wire, rng.choice(INTERESTING_F32))
        return Field(number, wire, rng.choice(self._payloads))

    # ---------------------------------------------------------------- bytes

    def _bytes(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        op = rng.random()
        if op < 0.3 and buf:
            for _ in range(rng.choice((1, 2, 4, 8))):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
        elif op < 0.4 and buf:
            buf[rng.randrange(len(buf))] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x01))
        elif op < 0.55:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.choice((1, 2, 4, 10)))
        elif op < 0.7 and buf:
            i = rng.randrange(len(buf))
            del buf[i:i + rng.choice((1, 2, 4, 16))]
        elif op < 0.8 and buf:
            i = rng.randrange(len(buf))
            j = min(len(buf), i + rng.choice((2, 8, 32)))
            buf[j:j] = buf[i:j] * rng.choice((1, 2, 8))
        elif op < 0.9:
            buf = buf[:rng.randrange(len(buf) + 1)]
        else:
            buf += rng.choice(self.donors)  # protobuf merges concatenated messages
        return bytes(buf)
