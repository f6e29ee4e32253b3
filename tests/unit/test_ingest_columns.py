"""The column-wise ingest path accepts exactly what the per-event path accepts, by property.

`EventBatch.add_columns` (fed by the gRPC decoder's `_add_columns` and the REST decoder's
`_add_json_columns`) is a fast path: it must accept the same batches, build the same Event records
(payload text and decoded payload included) and leave every other batch to the per-event path,
whose errors (index, field, message) are what clients see. Each case runs both: the public entry
(columns first) and the per-event loop alone; outcomes must be equal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import PayloadTooLargeError, ValidationError
from domain.metering.events import MAX_DATA_DEPTH, EventBatch, IngestLimits, validate_batch
from server.servicers.events import add_cloudevents, add_each
from tally.v1 import events_pb2

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LIMITS = IngestLimits(max_event_bytes=400, max_batch_events=50, max_batch_bytes=1 << 20)
CASES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DEEP: dict[str, Any] = {"a": 1}
for _ in range(MAX_DATA_DEPTH + 1):
    DEEP = {"a": [DEEP]}
BRACKETS = {"s": "{[" * 40}  # many brackets inside a string: not deep
TEXTS = st.sampled_from(["a", "evt-1", "", "ünï", " "])
DATA = st.sampled_from(
    [
        None,
        {},
        {"tokens": 5, "model": "gpt-4o"},
        {"a": 1, "a": 2},  # noqa: F601 - a duplicate key, as a client may send it
        {"n": 2**70},
        {"x": "y" * 500},
        DEEP,
        BRACKETS,
        [1, 2],
        "text",
        3,
    ]
)


def outcome(run: Any) -> Any:
    """The accepted events (with decoded payloads) or the error a client would get."""
    try:
        events = run()
    except ValidationError as error:
        return ("invalid", [(v.field, v.message, v.code) for v in error.violations], str(error))
    except PayloadTooLargeError as error:
        return ("too large", str(error))
    return ("ok", [(e, e.parsed) for e in events])


# gRPC: CloudEvent messages, valid and invalid in every field the decoder reads.
JSON_TEXTS = st.one_of(
    DATA.filter(lambda d: not (isinstance(d, dict) and "n" in d)).map(orjson.dumps),
    st.sampled_from(
        [
            b'{"n":1180591620717411303424}',
            b'{"a":1,"a":2}',
            b"",
            b"{",
            b'{"a":1}, {"b":2}',
            b"null",
            b'{"a":1} x',
            b"\xff",
            b'{"a":"\\ud800"}',
        ]
    ),
)


@st.composite
def cloudevents(draw: st.DrawFn) -> events_pb2.CloudEvent:
    message = events_pb2.CloudEvent(
        id=draw(TEXTS),
        source=draw(TEXTS),
        type=draw(TEXTS),
        subject=draw(TEXTS),
        specversion=draw(st.sampled_from(["", "1.0", "0.3"])),
    )
    content_type = draw(st.sampled_from([None, "application/json", "", "text/plain"]))
    if content_type is not None:
        message.datacontenttype = content_type
    seconds = draw(st.sampled_from([None, 0, 1, 1_767_225_600, -5, 4_200_000_000]))
    if seconds is not None:
        message.time.seconds = seconds
        message.time.nanos = draw(st.sampled_from([0, 999_999, 1_000_000, 123_456_789]))
    payload = draw(st.sampled_from(["none", "json", "struct"]))
    if payload == "json":
        message.data_json = draw(JSON_TEXTS)
    elif payload == "struct":
        message.data.update({"k": draw(st.sampled_from(["v", 1.5, True]))})
    return message


@CASES
@given(
    st.one_of(
        st.lists(cloudevents(), min_size=1, max_size=6),
        # Mostly valid batches, so the column path is exercised where it accepts.
        st.lists(cloudevents(), min_size=1, max_size=6).map(lambda ms: [_valid(m) for m in ms]),
    )
)
def test_grpc_columns_match_per_event(messages: list[events_pb2.CloudEvent]) -> None:
    def columns() -> Any:
        return add_cloudevents(EventBatch("ns", NOW, LIMITS), messages).result()

    def each() -> Any:
        batch = EventBatch("ns", NOW, LIMITS)
        add_each(batch, messages)
        return batch.result()

    assert outcome(columns) == outcome(each)


def _valid(message: events_pb2.CloudEvent) -> events_pb2.CloudEvent:
    valid = events_pb2.CloudEvent()
    valid.CopyFrom(message)
    for name in ("id", "source", "type", "subject"):
        setattr(valid, name, getattr(message, name) or "x")
    valid.specversion = "1.0"
    valid.ClearField("datacontenttype")
    if valid.HasField("time") and not 0 <= valid.time.seconds < 4_000_000_000:
        valid.time.seconds = 1
    if valid.WhichOneof("payload") == "data_json" and not valid.data_json.startswith(b"{"):
        valid.data_json = b'{"ok":true}'
    return valid


# REST: decoded JSON, where any field may have any JSON type.
ANY_JSON = st.one_of(TEXTS, st.sampled_from([None, 1, 1.5, True, [], ["a"], {"a": 1}]))
TIMES = st.sampled_from(
    [
        None,
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123+02:00",
        "2026-01-01T00:00:00.123456789Z",
        "2026-01-01T00:00:00,5Z",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00+0200",
        "2026-13-01T00:00:00Z",
        "2026-01-01t00:00:00z",
        "2026-01-01T00:00:00",
        "2200-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "yesterday",
        5,
        ["x"],
    ]
)


@st.composite
def json_events(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(st.sampled_from([None, 1, "event", []]))
    raw: dict[str, Any] = {}
    for name, values in (
        ("id", st.one_of(TEXTS, ANY_JSON)),
        ("source", TEXTS),
        ("type", TEXTS),
        ("subject", st.one_of(TEXTS, ANY_JSON)),
        ("specversion", st.sampled_from(["1.0", "0.3", 1.0, ["1.0"]])),
        ("datacontenttype", st.sampled_from(["application/json", "text/plain", None, {}])),
        ("time", TIMES),
        ("data", DATA),
        ("data_base64", st.sampled_from(["eyJ2IjoxfQ==", "eyJ2IjoxfQ", "WzFd", "!", None, 5])),
    ):
        if draw(st.integers(0, 4)) > 0:  # a field is sometimes missing
            raw[name] = draw(values)
    return raw


@CASES
@given(st.lists(json_events(), min_size=1, max_size=6), st.booleans())
def test_json_columns_match_per_event(raws: list[Any], mostly_valid: bool) -> None:
    if mostly_valid:
        raws = [
            {"id": "i", "source": "s", "type": "t", "subject": "u", "time": "2026-01-01T00:00:00Z", "data": {"v": 1}}
            | ({k: v for k, v in r.items() if k in ("time", "data")} if isinstance(r, dict) else {})
            for r in raws
        ]

    def each() -> Any:
        batch = EventBatch("ns", NOW, LIMITS)
        for index, raw in enumerate(raws):
            batch.add_json(index, raw)
        return batch.result()

    assert outcome(lambda: validate_batch(raws, "ns", NOW, LIMITS)) == outcome(each)


def test_the_usual_batch_takes_the_column_path() -> None:
    """The fast path is not dead code: a plain valid batch is accepted by `add_columns` itself."""
    messages = [
        events_pb2.CloudEvent(id=f"e{n}", source="s", type="t", subject="u", data_json=b'{"tokens":1}')
        for n in range(3)
    ]
    messages[0].time.FromDatetime(NOW)
    batch = EventBatch("ns", NOW, LIMITS)
    from server.servicers.events import _add_columns

    assert _add_columns(batch, messages)
    assert [(e.id, e.time_ms, e.data, e.parsed) for e in batch.events] == [
        ("e0", int(NOW.timestamp() * 1000), '{"tokens":1}', {"tokens": 1}),
        ("e1", batch.now_ms, '{"tokens":1}', {"tokens": 1}),
        ("e2", batch.now_ms, '{"tokens":1}', {"tokens": 1}),
    ]
