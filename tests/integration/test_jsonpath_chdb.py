"""The Python twin of JSON_VALUE / toFloat64OrNull agrees with chDB, by property.

Documents are encoded the way ingest stores them (orjson, which is what the events table's `data`
column holds) and, for the cases orjson cannot encode, with Python's json module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.metering.jsonpath import (
    JsonPath,
    extract_values,
    format_float64,
    json_value,
    parse_jsonpath,
    to_float64_or_nan,
)
from tests.support.services import require_module

require_module("chdb")

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    # chDB holds one data directory per process; closing the client lets the next module open its own.
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('jsonpath')}/events")
    yield client
    client.close()


def ch_json_values(ch: Client, text: str, paths: list[JsonPath]) -> list[str]:
    columns = ", ".join(f"JSON_VALUE({{d:String}}, {{p{i}:String}})" for i in range(len(paths)))
    parameters: dict[str, Any] = {"d": text}
    parameters.update({f"p{i}": path.canonical for i, path in enumerate(paths)})
    return list(ch.query(f"SELECT {columns}", parameters=parameters).result_rows[0])


def ch_to_float(ch: Client, texts: list[str]) -> list[float | None]:
    rows = ch.query("SELECT arrayMap(x -> toFloat64OrNull(x), {v:Array(String)})", parameters={"v": texts})
    return list(rows.result_rows[0][0])


def same_float(a: float, b: float | None) -> bool:
    if b is None or math.isnan(b):
        return math.isnan(a)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


KEYS = st.one_of(
    st.sampled_from(["a", "b", "model", "tokens", "a b", "a.b", "it's", 'say "hi"', "back\\slash", "", "0", "é", "$"]),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=6),
)
NUMERIC_TEXT = st.one_of(
    st.from_regex(r"\A[+-]?[0-9]{0,4}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,3})?\Z"),
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "nan(1)", "1_000", " 1", "0x1", "1e", "", "true"]),
    st.floats(allow_nan=False).map(repr),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    # orjson, which writes the stored documents, refuses integers beyond 64 bits.
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    NUMERIC_TEXT,
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(KEYS, children, max_size=5),
    ),
    max_leaves=20,
)


def paths_into(doc: Any, draw: st.DrawFn) -> list[JsonPath]:
    """A few paths: some that walk into `doc`, some that miss."""
    paths: list[JsonPath] = []
    for _ in range(draw(st.integers(1, 4))):
        segments: list[str | int] = []
        node = doc
        while len(segments) < 6:
            if isinstance(node, dict) and node and draw(st.booleans()):
                key = draw(st.sampled_from(sorted(node)))
                segments.append(key)
                node = node[key]
            elif isinstance(node, list) and node and draw(st.booleans()):
                index = draw(st.integers(0, len(node)))
                segments.append(index)
                node = node[index] if index < len(node) else None
            else:
                break
        if not segments or draw(st.integers(0, 5)) == 0:
            segments.append(draw(st.one_of(KEYS, st.integers(0, 3))))
        text = "$" + "".join(
            f"[{s}]" if isinstance(s, int) else "['" + s.replace("\\", "\\\\").replace("'", "\\'") + "']"
            for s in segments
        )
        paths.append(parse_jsonpath(text))
    return paths


@st.composite
def documents_with_paths(draw: st.DrawFn) -> tuple[Any, list[JsonPath]]:
    doc = draw(st.dictionaries(KEYS, DOCUMENTS, max_size=6))
    return doc, paths_into(doc, draw)


@PROPERTY_SETTINGS
@given(documents_with_paths())
def test_json_value_matches_chdb(ch: Client, case: tuple[Any, list[JsonPath]]) -> None:
    doc, paths = case
    text = orjson.dumps(doc).decode()
    expected = ch_json_values(ch, text, paths)
    # The sink decodes what ingest stored; decode again so both sides see the same document.
    stored = orjson.loads(text)
    assert [json_value(stored, p) for p in paths] == expected
    numbers, strings = extract_values(stored, paths, paths)
    floats = ch_to_float(ch, expected)
    for path, ch_text, ch_float in zip(paths, expected, floats, strict=True):
        assert strings[path.canonical] == ch_text
        assert same_float(numbers[path.canonical], ch_float), (path.canonical, ch_text, ch_float)


@PROPERTY_SETTINGS
@given(st.lists(NUMERIC_TEXT, min_size=1, max_size=20))
def test_to_float64_matches_chdb(ch: Client, texts: list[str]) -> None:
    for text, expected in zip(texts, ch_to_float(ch, texts), strict=True):
        assert same_float(to_float64_or_nan(text), expected), text


@PROPERTY_SETTINGS
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_float_formatting_matches_chdb(ch: Client, values: list[float]) -> None:
    docs = [json.dumps({"a": v}) for v in values]
    rows = ch.query("SELECT arrayMap(d -> JSON_VALUE(d, '$.a'), {d:Array(String)})", parameters={"d": docs})
    assert [format_float64(v) for v in values] == list(rows.result_rows[0][0])


@PROPERTY_SETTINGS
@given(st.lists(st.integers(min_value=-(10**30), max_value=10**30), min_size=1, max_size=30))
def test_integer_text_matches_chdb(ch: Client, values: list[int]) -> None:
    docs = [json.dumps({"a": v}) for v in values]
    rows = ch.query(
        "SELECT arrayMap(d -> JSON_VALUE(d, '$.a'), {d:Array(String)}), "
        "arrayMap(d -> toFloat64OrNull(JSON_VALUE(d, '$.a')), {d:Array(String)})",
        parameters={"d": docs},
    )
    texts, floats = rows.result_rows[0]
    path = parse_jsonpath("$.a")
    for value, text, number in zip(values, texts, floats, strict=True):
        assert json_value({"a": value}, path) == text
        assert same_float(extract_values({"a": value}, [path], [])[0]["$.a"], number)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": 1e400}',
        '{"a": 1, "b": -1e400}',
        '{"a": 1, "b": Infinity}',
        '{"a": 1, "b": NaN}',
        '{"a": 1, "b": "\\ud800"}',
        '{"a": 1, "\\udc00": 2}',
    ],
)
def test_documents_chdb_rejects(ch: Client, text: str) -> None:
    path = parse_jsonpath("$.a")
    assert ch_json_values(ch, text, [path]) == [""]
    doc = json.loads(text)
    assert json_value(doc, path) == ""
    numbers, strings = extract_values(doc, [path], [path])
    assert math.isnan(numbers["$.a"]) and strings == {"$.a": ""}


def test_canonical_paths_are_understood_by_chdb(ch: Client) -> None:
    weird = ["a b", "a.b", "it's", 'say "hi"', "back\\slash", "", "0", "é", "$", "😀", "a]b", "a[b", "null"]
    doc = {key: f"value of {key}" for key in weird}
    paths = [parse_jsonpath('$["' + key.replace("\\", "\\\\").replace('"', '\\"') + '"]') for key in weird]
    assert ch_json_values(ch, json.dumps(doc), paths) == [doc[key] for key in weird]
