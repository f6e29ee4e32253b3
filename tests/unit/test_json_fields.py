"""Unknown JSON fields of a REST body, checked against the method's request message (server/json_fields.py)."""

from __future__ import annotations

import orjson
import pytest

import tally.v1.entitlements_pb2
import tally.v1.meters_pb2
from domain.errors import ValidationError
from server.json_fields import BODY_HEADER, check_json_body

CREATE_METER = "/tally.v1.MeterService/CreateMeter"
CREATE_ENTITLEMENT = "/tally.v1.EntitlementService/CreateCustomerEntitlement"
assert tally.v1.entitlements_pb2


def fields(method: str, body: object) -> list[tuple[str, str]]:
    try:
        check_json_body(method, [(BODY_HEADER, orjson.dumps(body))])
    except ValidationError as error:
        return [(v.field, v.message) for v in error.violations]
    return []


def test_known_fields_pass_in_json_and_proto_names() -> None:
    assert fields(CREATE_METER, {"slug": "a", "eventType": "e", "event_type": "e", "groupBy": {"m": "$.m"}}) == []


def test_a_misspelling_is_named_with_a_suggestion() -> None:
    [(field, message)] = fields(CREATE_METER, {"slug": "a", "groupby": {}})
    assert field == "groupby" and "did you mean 'groupBy'" in message


def test_nested_fields_follow_the_body_rule() -> None:
    # body: "entitlement": the JSON body is the entitlement message, not the request.
    body = {"type": "metered", "featureKey": "f", "usagePeriod": {"interval": "MONTH", "anchr": "x"}}
    [(field, _)] = fields(CREATE_ENTITLEMENT, body)
    assert field == "usagePeriod.anchr"
    assert fields(CREATE_ENTITLEMENT, {"type": "metered", "metadata": {"any": "key"}}) == [], "map keys are data"


@pytest.mark.parametrize("metadata", [[], [("other", b"x")]])
def test_without_the_forwarded_body_nothing_is_checked(metadata: list[tuple[str, bytes]]) -> None:
    check_json_body(CREATE_METER, metadata)
