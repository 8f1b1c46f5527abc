"""Mutations of SIP messages for fuzzing: byte-level damage plus SIP-aware changes (numbers made
Unicode, huge or negative; headers repeated, dropped, folded; lengths lied about). Deterministic
for a given `random.Random`, so a failing case can be replayed from its seed."""

from __future__ import annotations

import random
import re

UNICODE_DIGITS = ["²", "٣", "߄", "७", "໕", "１", "𝟗", "⁰"]
NUMBERS = re.compile(rb"[0-9]+")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def mutate(data: bytes, rnd: random.Random, rounds: int | None = None) -> bytes:
    """`data` with 1-4 random mutations applied."""
    for _ in range(rounds or rnd.randint(1, 4)):
        op = rnd.randrange(14)
        n = len(data)
        if op == 0 and n:  # flip a byte
            i = rnd.randrange(n)
            data = data[:i] + bytes([rnd.randrange(256)]) + data[i + 1:]
        elif op == 1:  # insert random bytes
            i = rnd.randrange(n + 1)
            data = data[:i] + bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8))) + data[i:]
        elif op == 2 and n:  # delete a range
            i = rnd.randrange(n)
            data = data[:i] + data[i + rnd.randint(1, 40):]
        elif op == 3:  # a number becomes Unicode digits
            nums = list(NUMBERS.finditer(data))
            if nums:
                m = rnd.choice(nums)
                data = data[:m.start()] + rnd.choice(UNICODE_DIGITS).encode() + data[m.end():]
        elif op == 4:  # a number becomes huge, negative or empty
            nums = list(NUMBERS.finditer(data))
            if nums:
                m = rnd.choice(nums)
                new = rnd.choice([b"99999999999999999999999", b"-1", b"", b"0", b"4294967296", b"00000000001"])
                data = data[:m.start()] + new + data[m.end():]
        elif op == 5:  # duplicate a line
            lines = _lines(data)
            i = rnd.randrange(len(lines))
            lines.insert(i, lines[i])
            data = b"\r\n".join(lines)
        elif op == 6:  # drop a line
            lines = _lines(data)
            del lines[rnd.randrange(len(lines))]
            data = b"\r\n".join(lines)
        elif op == 7:  # swap two lines
            lines = _lines(data)
            i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            data = b"\r\n".join(lines)
        elif op == 8:  # truncate
            data = data[: rnd.randrange(n + 1)]
        elif op == 9:  # control characters, lone CR/LF, NUL
            i = rnd.randrange(n + 1)
            data = data[:i] + rnd.choice([b"\r", b"\n", b"\x00", b"\t", b"\r\n ", b"\r\n\r\n", b"\x7f"]) + data[i:]
        elif op == 10:  # a header repeated many times
            lines = _lines(data)
            i = rnd.randrange(len(lines))
            lines[i:i] = [lines[i]] * rnd.randint(2, 250)
            data = b"\r\n".join(lines)
        elif op == 11:  # separators and quotes in a value
            i = rnd.randrange(n + 1)
            data = data[:i] + rnd.choice([b";;", b",,", b"<", b">", b'"', b"\\", b"@", b"?", b":", b" ", b"%"]) + data[i:]
        elif op == 12:  # a long run
            i = rnd.randrange(n + 1)
            data = data[:i] + rnd.choice([b"a", b";", b" ", b"%", b"\xff"]) * rnd.randint(100, 9000) + data[i:]
        else:  # Content-Length lies
            data = re.sub(rb"(?im)^(content-length|l)[ \t]*:[^\r\n]*", b"Content-Length: " +
                          str(rnd.randint(0, 70000)).encode(), data, count=1)
    return data
