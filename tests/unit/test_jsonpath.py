"""The meter JSONPath grammar and the Python twin of JSON_VALUE / toFloat64OrNull.

The expected values of json_value and to_float64_or_nan below were measured on chDB 26.9;
tests/integration/test_jsonpath_chdb.py checks the same functions against chDB by property.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.metering.jsonpath import (
    MAX_PATH_LENGTH,
    MAX_SEGMENTS,
    JsonPath,
    JsonPathError,
    extract_values,
    format_float64,
    json_value,
    parse_jsonpath,
    to_float64_or_nan,
)


@pytest.mark.parametrize(
    ("text", "segments", "canonical"),
    [
        ("$.tokens", ("tokens",), "$.tokens"),
        ("$.a.b.c", ("a", "b", "c"), "$.a.b.c"),
        ("$['a']", ("a",), "$.a"),
        ('$["a"]', ("a",), "$.a"),
        ("$.items[0].price", ("items", 0, "price"), "$.items[0].price"),
        ("$[3]", (3,), "$[3]"),
        ("$.a[10][2]", ("a", 10, 2), "$.a[10][2]"),
        ("$.model-name", ("model-name",), "$['model-name']"),
        ("$.1st", ("1st",), "$['1st']"),
        ("$._private", ("_private",), "$._private"),
        ("$['a b']", ("a b",), "$['a b']"),
        ("$['a.b']", ("a.b",), "$['a.b']"),
        ("$['']", ("",), "$['']"),
        ("$['it\\'s']", ("it's",), "$['it\\'s']"),
        ('$["say \\"hi\\""]', ('say "hi"',), "$['say \"hi\"']"),
        ("$['back\\\\slash']", ("back\\slash",), "$['back\\\\slash']"),
        ("$['$']", ("$",), "$['$']"),
        ("$.ünïcode", ("ünïcode",), "$['ünïcode']"),
        ("$['😀']", ("😀",), "$['😀']"),
        ("$['null']", ("null",), "$.null"),
    ],
)
def test_accepted_paths(text: str, segments: tuple[object, ...], canonical: str) -> None:
    path = parse_jsonpath(text)
    assert path.segments == segments
    assert path.canonical == canonical
    assert parse_jsonpath(canonical) == path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "must start with '$'"),
        ("tokens", "must start with '$'"),
        ("$", "at least one"),
        ("$.", "member name"),
        ("$..a", "recursive descent"),
        ("$.a..b", "recursive descent"),
        ("$.*", "wildcards"),
        ("$[*]", "wildcards"),
        ("$.a[*].b", "wildcards"),
        ("$[?(@.a)]", "filter expressions"),
        ("$[?(@.price < 10)]", "filter expressions"),
        ("$[(@.length-1)]", "script expressions"),
        ("$.a.length()", "function calls"),
        ("$.a[-1]", "negative indexes"),
        ("$.a[0:2]", "slices"),
        ("$.a[:2]", "slices"),
        ("$.a[0,1]", "unions"),
        ("$.a[01]", "leading zeros"),
        ("$.a[99999999999]", "at most"),
        ("$.a[ 0 ]", "expected a quoted name or an index"),
        ("$.a') OR 1=1 --", "expected '.' or '['"),
        ("$.a' OR '1'='1", "expected '.' or '['"),
        ('$.a"); DROP TABLE events; --', "expected '.' or '['"),
        ("$['a'] OR 1=1", "expected '.' or '['"),
        ("$['a", "unterminated"),
        ("$['a']]", "expected '.' or '['"),
        ("$['a'", "expected ']'"),
        ("$[", "unterminated '['"),
        ("$['a\\nb']", "escapes"),
        ("$['a\\x41']", "escapes"),
        ("$['a\\u0041']", "escapes"),
        ("$.a\nb", "control characters"),
        ("$['a\nb']", "control characters"),
        ("$.a\rb", "control characters"),
        ("$.a\tb", "control characters"),
        ("$.a\x00", "control characters"),
        ("$['\x00']", "control characters"),
        ("$.a\x7f", "control characters"),
        ("$['\ud800']", "surrogates"),
        ("$ .a", "expected '.' or '['"),
        ("$.a b", "expected '.' or '['"),
        ("$.{a}", "member name"),
        ("${a}", "expected '.' or '['"),
        ("$2", "expected '.' or '['"),
        ("@.a", "must start with '$'"),
        ("$.a;", "expected '.' or '['"),
        ("$." + "a" * MAX_PATH_LENGTH, f"at most {MAX_PATH_LENGTH} characters"),
        ("$" + ".a" * (MAX_SEGMENTS + 1), f"at most {MAX_SEGMENTS} segments"),
        ("$" + "[0]" * (MAX_SEGMENTS + 1), f"at most {MAX_SEGMENTS} segments"),
    ],
)
def test_rejected_paths(text: str, fragment: str) -> None:
    with pytest.raises(JsonPathError) as excinfo:
        parse_jsonpath(text)
    assert fragment in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_limits_are_inclusive() -> None:
    assert len(parse_jsonpath("$" + ".a" * MAX_SEGMENTS).segments) == MAX_SEGMENTS
    longest = "$." + "a" * (MAX_PATH_LENGTH - 2)
    assert parse_jsonpath(longest).canonical == longest


def test_non_string_is_rejected() -> None:
    with pytest.raises(JsonPathError):
        parse_jsonpath(42)  # type: ignore[arg-type]


def test_parse_is_cached_and_paths_compare_by_meaning() -> None:
    assert parse_jsonpath("$.a") is parse_jsonpath("$.a")
    assert parse_jsonpath("$['a'][0]") == parse_jsonpath('$["a"][0]')
    assert hash(parse_jsonpath("$['a']")) == hash(parse_jsonpath("$.a"))
    assert str(parse_jsonpath("$['a']")) == "$.a"


_names = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=12)
_segments = st.lists(st.one_of(_names, st.integers(0, 1000)), min_size=1, max_size=8)


@given(_segments)
def test_canonical_round_trips(segments: list[str | int]) -> None:
    canonical = parse_jsonpath("$" + "".join(_spell(s) for s in segments)).canonical
    path = parse_jsonpath(canonical)
    assert path.segments == tuple(segments)
    assert path.canonical == canonical
    # The canonical text can never leave its quotes: every quote inside a name is escaped.
    assert "\n" not in canonical and "\x00" not in canonical


def _spell(segment: str | int) -> str:
    if isinstance(segment, int):
        return f"[{segment}]"
    return '["' + segment.replace("\\", "\\\\").replace('"', '\\"') + '"]'


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_jsonpatherror(text: str) -> None:
    try:
        path = parse_jsonpath(text)
    except JsonPathError:
        return
    assert isinstance(path, JsonPath)
    assert parse_jsonpath(path.canonical) == path


# --- json_value ------------------------------------------------------------------------------

DOC = {
    "str": "hello",
    "esc": 'a"b\nc',
    "uni": "é😀",
    "empty": "",
    "int": 42,
    "neg": -7,
    "big": 18446744073709551615,
    "huge": 12345678901234567890123,
    "float": 1.5,
    "whole": 100.0,
    "tiny": 0.0001,
    "sci": 1e21,
    "negzero": -0.0,
    "true": True,
    "false": False,
    "null": None,
    "obj": {"inner": {"deep": "x"}, "0": "zero"},
    "arr": [10, "twenty", [30, 31], {"k": "v"}],
    "numstr": "2.5",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.str", "hello"),
        ("$.esc", 'a"b\nc'),
        ("$.uni", "é😀"),
        ("$.empty", ""),
        ("$.int", "42"),
        ("$.neg", "-7"),
        ("$.big", "18446744073709551615"),
        ("$.huge", "12345678901234567890123"),
        ("$.float", "1.5"),
        ("$.whole", "100"),
        ("$.tiny", "1e-04"),
        ("$.sci", "1e+21"),
        ("$.negzero", "-0"),
        ("$.true", "true"),
        ("$.false", "false"),
        ("$.null", "null"),
        ("$.obj", ""),
        ("$.obj.inner.deep", "x"),
        ("$.obj[0]", ""),
        ("$.obj['0']", "zero"),
        ("$.arr", ""),
        ("$.arr[0]", "10"),
        ("$.arr[1]", "twenty"),
        ("$.arr[2][1]", "31"),
        ("$.arr[3].k", "v"),
        ("$.arr[4]", ""),
        ("$.arr.k", ""),
        ("$.missing", ""),
        ("$.str.sub", ""),
        ("$.null.x", ""),
        ("$[0]", ""),
        ("$.numstr", "2.5"),
    ],
)
def test_json_value(path: str, expected: str) -> None:
    assert json_value(DOC, parse_jsonpath(path)) == expected


def test_json_value_on_non_object_documents() -> None:
    assert json_value([5, 6], parse_jsonpath("$[1]")) == "6"
    assert json_value("text", parse_jsonpath("$.a")) == ""
    assert json_value(None, parse_jsonpath("$.a")) == ""


def test_invalid_documents_yield_empty_for_every_path() -> None:
    # ClickHouse rejects the whole document when a number overflows float64 or a string holds a
    # lone surrogate; Python's json decodes both, so the twin must notice.
    for bad in (math.inf, -math.inf, math.nan, "\ud800", {"\udc00": 1}):
        doc = {"a": 1, "b": {"c": [bad]}}
        assert json_value(doc, parse_jsonpath("$.a")) == ""
        assert extract_values(doc, [parse_jsonpath("$.a")], [parse_jsonpath("$.a")])[1] == {"$.a": ""}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, "1.5"),
        (1.0, "1"),
        (100.0, "100"),
        (1500.0, "1500"),
        (1e5, "1e+05"),
        (12300000.0, "12300000"),
        (1e15, "1e+15"),
        (1e21, "1e+21"),
        (0.1, "0.1"),
        (0.001, "0.001"),
        (0.0001, "1e-04"),
        (1.5e-5, "1.5e-05"),
        (0.000123, "0.000123"),
        (123456789.12345679, "123456789.12345679"),
        (12345678901234568.0, "12345678901234568"),
        (3.475952314914227e16, "34759523149142272"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (1e-323, "1e-323"),
        (0.0, "0"),
        (-0.0, "-0"),
        (-0.001, "-0.001"),
        (-1e-7, "-1e-07"),
        (-1e21, "-1e+21"),
    ],
)
def test_format_float64(value: float, text: str) -> None:
    assert format_float64(value) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1.0),
        ("-5", -5.0),
        ("+5", 5.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("-.5", -0.5),
        ("1e3", 1000.0),
        ("1.5E-3", 0.0015),
        ("1.e5", 100000.0),
        ("00012", 12.0),
        ("-0", -0.0),
        ("1e0500", math.inf),
        ("1e-500", 0.0),
        ("1" * 400, math.inf),
        ("inf", math.inf),
        ("INF", math.inf),
        ("+Infinity", math.inf),
        ("-infinity", -math.inf),
        ("-inf", -math.inf),
        ("9007199254740993", 9007199254740992.0),
    ],
)
def test_to_float64_numbers(text: str, expected: float) -> None:
    result = to_float64_or_nan(text)
    assert result == expected
    assert math.copysign(1.0, result) == math.copysign(1.0, expected)


@pytest.mark.parametrize(
    "text",
    [
        "nan",
        "NaN",
        "-nan",
        "nan(1)",
        "NAN(x_1)",
        "",
        " 5",
        "5 ",
        "\t5",
        "5\n",
        "1_000",
        "0x10",
        "0b1",
        "1,5",
        "1e",
        "1e+",
        "e5",
        ".",
        "-",
        "+",
        "--5",
        "1.2.3",
        "true",
        "null",
        "infinit",
        "inf()",
        "nan(-1)",
        "١٢",
        "\uff15",  # fullwidth five
        "12abc",
        "1\x00",
    ],
)
def test_to_float64_null_and_nan(text: str) -> None:
    assert math.isnan(to_float64_or_nan(text))


def test_extract_values() -> None:
    tokens, model, flag, missing = (parse_jsonpath(p) for p in ("$.tokens", "$['model']", "$.flag", "$.gone"))
    data = {"tokens": "12.5", "model": "gpt-4", "flag": True}
    numbers, strings = extract_values(data, [tokens, flag, missing], [model, tokens, missing])
    assert numbers["$.tokens"] == 12.5
    assert math.isnan(numbers["$.flag"]) and math.isnan(numbers["$.gone"])
    assert strings == {"$.model": "gpt-4", "$.tokens": "12.5", "$.gone": ""}
    numbers, _ = extract_values({"n": 10**400}, [parse_jsonpath("$.n")], [])
    assert numbers["$.n"] == math.inf
    numbers, _ = extract_values({"n": -(10**400)}, [parse_jsonpath("$.n")], [])
    assert numbers["$.n"] == -math.inf
    numbers, strings = extract_values(None, [tokens], [model])
    assert math.isnan(numbers["$.tokens"]) and strings == {"$.model": ""}


def test_extract_values_agrees_with_json_value() -> None:
    paths = [parse_jsonpath(p) for p in ("$.str", "$.int", "$.float", "$.numstr", "$.obj", "$.arr[0]", "$.missing")]
    numbers, strings = extract_values(DOC, paths, paths)
    for path in paths:
        text = json_value(DOC, path)
        assert strings[path.canonical] == text
        expected = to_float64_or_nan(text)
        got = numbers[path.canonical]
        assert got == expected or (math.isnan(got) and math.isnan(expected))
