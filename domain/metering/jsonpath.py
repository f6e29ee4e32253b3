"""The meter JSONPath grammar and the ingest-time value extractor.

Owns two things:

* `parse_jsonpath`: a small whitelisted JSONPath grammar (`$` followed by `.name`, `['text']` /
  `["text"]` and `[N]` segments). Everything else - filters, wildcards, recursive descent, slices,
  functions, control characters, over-long or over-deep paths - is rejected, so a path can never
  carry anything but member names and indexes. The parsed path's `canonical` text is the one form
  Tally ever hands to ClickHouse (always as a bound parameter, never spliced) and the key of the
  events table's `num_values` / `str_values` maps.
* `json_value` / `to_float64_or_nan` / `extract_values`: a Python twin of ClickHouse's
  `JSON_VALUE(data, canonical)` and `toFloat64OrNull`, so values extracted at ingest equal what a
  query computes from the raw `data` column (measured on chDB 26.9; tests/integration/
  test_jsonpath_chdb.py holds the property test that keeps the two in step).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

MAX_PATH_LENGTH: Final = 256
MAX_SEGMENTS: Final = 32
# ClickHouse accepts larger indexes, but no usage event holds an array this long; a bound keeps the
# canonical text short and the value well inside every integer type involved.
MAX_INDEX: Final = 2**31 - 1

Segment = str | int
"""A member name (str) or an array index (int)."""

_SIMPLE_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_QUOTE_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"'}


class JsonPathError(ValueError):
    """A JSONPath outside Tally's grammar; the message says what and where."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path. Two spellings of the same path (`$.a`, `$['a']`) are equal."""

    segments: tuple[Segment, ...]
    canonical: str

    def __str__(self) -> str:
        return self.canonical


def _render_canonical(segments: tuple[Segment, ...]) -> str:
    parts = ["$"]
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _SIMPLE_NAME_RE.match(segment):
            parts.append(f".{segment}")
        else:
            # Single quotes because ClickHouse's JSONPath cannot spell an empty name in double quotes;
            # only the backslash and the quote need escaping, control characters never get this far.
            escaped = segment.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "".join(parts)


def _is_dot_name_char(ch: str) -> bool:
    # Dot notation takes word characters and '-' (common in event payloads); anything else needs
    # the bracketed form, which keeps the grammar unambiguous.
    return ch == "_" or ch == "-" or ch.isalnum()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> JsonPathError:
        return JsonPathError(f"invalid JSONPath at offset {self.pos}: {message}")

    def parse(self) -> tuple[Segment, ...]:
        text = self.text
        if not text.startswith("$"):
            raise self.fail("must start with '$'")
        self.pos = 1
        segments: list[Segment] = []
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == ".":
                segments.append(self._dot_member())
            elif ch == "[":
                segments.append(self._bracket())
            elif ch == "(":
                raise self.fail("function calls are not supported")
            else:
                raise self.fail(f"expected '.' or '[', got {ch!r}")
            if len(segments) > MAX_SEGMENTS:
                raise self.fail(f"at most {MAX_SEGMENTS} segments are allowed")
        if not segments:
            raise self.fail("must name at least one member or index after '$'")
        return tuple(segments)

    def _dot_member(self) -> str:
        text = self.text
        self.pos += 1
        if self.pos < len(text):
            nxt = text[self.pos]
            if nxt == ".":
                raise self.fail("recursive descent ('..') is not supported")
            if nxt == "*":
                raise self.fail("wildcards are not supported")
        start = self.pos
        while self.pos < len(text) and _is_dot_name_char(text[self.pos]):
            self.pos += 1
        if self.pos == start:
            found = repr(text[self.pos]) if self.pos < len(text) else "the end"
            raise self.fail(f"expected a member name after '.', got {found}; quote other names as ['name']")
        return text[start : self.pos]

    def _bracket(self) -> Segment:
        text = self.text
        self.pos += 1
        if self.pos >= len(text):
            raise self.fail("unterminated '['")
        ch = text[self.pos]
        segment: Segment
        if ch in "'\"":
            segment = self._quoted(ch)
        elif ch.isascii() and ch.isdigit():
            segment = self._index()
        elif ch == "*":
            raise self.fail("wildcards are not supported")
        elif ch == "?":
            raise self.fail("filter expressions are not supported")
        elif ch == "(":
            raise self.fail("script expressions are not supported")
        elif ch == "-":
            raise self.fail("negative indexes are not supported")
        elif ch == ":":
            raise self.fail("slices are not supported")
        else:
            raise self.fail(f"expected a quoted name or an index after '[', got {ch!r}")
        if self.pos >= len(text) or text[self.pos] != "]":
            found = repr(text[self.pos]) if self.pos < len(text) else "the end"
            raise self.fail(f"expected ']', got {found}")
        self.pos += 1
        return segment

    def _index(self) -> int:
        text = self.text
        start = self.pos
        while self.pos < len(text) and text[self.pos].isascii() and text[self.pos].isdigit():
            self.pos += 1
        digits = text[start : self.pos]
        if len(digits) > 1 and digits[0] == "0":
            self.pos = start
            raise self.fail("an index must not have leading zeros")
        if self.pos < len(text) and text[self.pos] in ":,":
            raise self.fail("slices and unions are not supported")
        # The length check keeps int() away from huge digit strings.
        if len(digits) > len(str(MAX_INDEX)) or int(digits) > MAX_INDEX:
            self.pos = start
            raise self.fail(f"an index must be at most {MAX_INDEX}")
        return int(digits)

    def _quoted(self, quote: str) -> str:
        text = self.text
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(text):
                raise self.fail("unterminated quoted name")
            ch = text[self.pos]
            if ch == quote:
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                self.pos += 1
                escaped = _QUOTE_ESCAPES.get(text[self.pos]) if self.pos < len(text) else None
                if escaped is None:
                    raise self.fail("only \\\\, \\' and \\\" escapes are allowed in a quoted name")
                out.append(escaped)
            else:
                out.append(ch)
            self.pos += 1


def _check_characters(text: str) -> None:
    for offset, ch in enumerate(text):
        code = ord(ch)
        if code < 0x20 or code == 0x7F:
            raise JsonPathError(f"invalid JSONPath at offset {offset}: control characters are not allowed")
        if 0xD800 <= code <= 0xDFFF:
            raise JsonPathError(f"invalid JSONPath at offset {offset}: lone surrogates are not allowed")


@lru_cache(maxsize=4096)
def parse_jsonpath(text: str) -> JsonPath:
    """Parses a meter JSONPath (valueProperty, a groupBy value); raises JsonPathError outside the grammar."""
    if not isinstance(text, str):
        raise JsonPathError("a JSONPath must be a string")
    if len(text) > MAX_PATH_LENGTH:
        raise JsonPathError(f"invalid JSONPath: at most {MAX_PATH_LENGTH} characters are allowed")
    _check_characters(text)
    segments = _Parser(text).parse()
    return JsonPath(segments=segments, canonical=_render_canonical(segments))


# --- ClickHouse's JSON_VALUE and toFloat64OrNull, in Python -------------------------------------

_MISSING: Final = object()
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
# toFloat64OrNull's grammar (measured): ASCII decimal with optional sign, fraction and exponent; no
# blanks, underscores, hex or Unicode digits. Special values are case-insensitive.
_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_SPECIAL_RE: Final = re.compile(r"([+-]?)(?:(infinity|inf)|nan(?:\([A-Za-z0-9_]*\))?)\Z", re.IGNORECASE)


def _document_is_valid(data: Any) -> bool:
    """Whether ClickHouse's parser accepts the JSON text of `data`.

    ClickHouse rejects a whole document holding a number outside float64's range (Python's json
    reads it as inf) or a lone surrogate escape, and JSON_VALUE then answers '' for every path.
    """
    stack = [data]
    pop = stack.pop
    push = stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind is dict:
            for key in value:
                if not key.isascii() and _SURROGATE_RE.search(key):
                    return False
            push(value.values())
        elif kind is list:
            push(value)
        elif kind is str:
            if not value.isascii() and _SURROGATE_RE.search(value):
                return False
        elif kind is float and not math.isfinite(value):
            return False
    return True


MISSING: Any = _MISSING


def lookup(data: Any, path: JsonPath) -> Any:
    """The value at `path` in a parsed JSON document, or MISSING."""
    return _lookup(data, path.segments)


def _lookup(data: Any, segments: tuple[Segment, ...]) -> Any:
    current = data
    for segment in segments:
        if isinstance(segment, str):
            if type(current) is not dict:
                return _MISSING
            current = current.get(segment, _MISSING)
            if current is _MISSING:
                return _MISSING
        else:
            if type(current) is not list or segment >= len(current):
                return _MISSING
            current = current[segment]
    return current


def format_float64(value: float) -> str:
    """Formats a double the way ClickHouse's JSON_VALUE prints one.

    C++ `to_chars` of the shortest round-trip form: fixed or scientific notation, whichever is
    shorter, fixed on a tie, an exponent of at least two digits, and a whole number in fixed
    notation printed exactly: 1e15 -> '1e+15', 0.0001 -> '1e-04', 0.001 -> '0.001',
    1500.0 -> '1500', 3.475952314914227e16 -> '34759523149142272', -0.0 -> '-0'.
    """
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    text = repr(abs(value))
    if "e" in text:
        mantissa, exp_text = text.split("e")
        digits = mantissa.replace(".", "")
        exponent = int(exp_text)
    else:
        whole, _, fraction = text.partition(".")
        if whole != "0":
            digits = whole + fraction
            exponent = len(whole) - 1
        else:
            stripped = fraction.lstrip("0")
            exponent = -(len(fraction) - len(stripped) + 1)
            digits = stripped
    digits = digits.rstrip("0") or "0"
    sign = "-" if value < 0 else ""
    scientific = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    scientific += f"e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent >= 0:
        if len(digits) <= exponent + 1:
            # Printed like printf's %.0f: the double's exact integer value, not zero padding
            # (3.475952314914227e16 -> '34759523149142272').
            fixed = str(int(abs(value)))
        else:
            fixed = digits[: exponent + 1] + "." + digits[exponent + 1 :]
    else:
        fixed = "0." + "0" * (-exponent - 1) + digits
    return sign + (fixed if len(fixed) <= len(scientific) else scientific)


def _scalar_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return format_float64(value)
    if value is None:
        return "null"
    # Objects, arrays, missing paths and anything that is not JSON: ClickHouse answers ''.
    return ""


def json_value(data: Any, path: JsonPath) -> str:
    """What `JSON_VALUE(json_text, path.canonical)` returns for the JSON text of `data`.

    Strings come back unquoted and unescaped, numbers re-serialized (1.50 -> '1.5'), booleans as
    'true'/'false', null as 'null'; objects, arrays and missing paths as ''. `data` is the decoded
    document (dict, list, str, int, float, bool, None). Duplicate object keys cannot be seen here:
    ClickHouse keeps the first, Python's decoders the last, so store the re-encoded document.
    """
    if not _document_is_valid(data):
        return ""
    return _scalar_text(_lookup(data, path.segments))


def to_float64_or_nan(text: str) -> float:
    """ClickHouse's `toFloat64OrNull(text)`, with NULL as NaN."""
    if _DECIMAL_RE.match(text):
        return float(text)
    special = _SPECIAL_RE.match(text)
    if special is None:
        return math.nan
    if special.group(2) is None:
        return math.nan
    return -math.inf if special.group(1) == "-" else math.inf


def _number_of(value: Any) -> float:
    """toFloat64OrNull(JSON_VALUE(...)) for one looked-up value, without formatting numbers to text."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            # ClickHouse reads an integer beyond float64's range as an infinity.
            return -math.inf if value < 0 else math.inf
    if kind is str:
        return to_float64_or_nan(value)
    # true/false/null print as words and objects/arrays/missing as '': none of them is a number.
    return math.nan


def extract_values(
    data: Any, numeric_paths: Iterable[JsonPath], string_paths: Iterable[JsonPath]
) -> tuple[dict[str, float], dict[str, str]]:
    """Meter values of one event, keyed by canonical path, for the events table's value maps.

    `num_values[p]` equals toFloat64OrNull(JSON_VALUE(data, p)) with NULL stored as NaN, and
    `str_values[p]` equals JSON_VALUE(data, p); every requested path gets an entry, so a query can
    trust the map whenever it holds the key.
    """
    if not _document_is_valid(data):
        return (
            {path.canonical: math.nan for path in numeric_paths},
            {path.canonical: "" for path in string_paths},
        )
    numbers = {path.canonical: _number_of(_lookup(data, path.segments)) for path in numeric_paths}
    strings = {path.canonical: _scalar_text(_lookup(data, path.segments)) for path in string_paths}
    return numbers, strings
