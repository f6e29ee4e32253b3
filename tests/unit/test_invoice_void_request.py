"""The void request as a client sends it (OpenMeter's VoidInvoiceActionInput) read into VoidInput:
each problem reported at its field, together; what Tally cannot do refused rather than ignored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.billing.invoice_rest import parse_void
from domain.billing.invoices import VoidAction, VoidInput, VoidLineAction
from domain.errors import ValidationError

PENDING = {"percentage": 100, "action": {"type": "pending"}}
DISCARD = {"percentage": 100, "action": {"type": "discard"}}


def fields(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        parse_void(body)
    return [v.field for v in refused.value.violations]


def test_a_void_reads_its_action_and_overrides() -> None:
    assert parse_void({"reason": " duplicate "}) == VoidInput("duplicate")
    at = "2030-01-01T00:00:00Z"
    read = parse_void(
        {
            "reason": "wrong customer",
            "action": {"percentage": 100.0, "action": {"type": "pending", "nextInvoiceAt": at}},
            "overrides": [{"lineId": "L1", "action": DISCARD}],
        }
    )
    later = VoidAction(VoidLineAction.PENDING, datetime(2030, 1, 1, tzinfo=UTC))
    assert read == VoidInput("wrong customer", later, {"L1": VoidAction()})
    assert (read.action_for("L1"), read.action_for("L2")) == (VoidAction(), later)
    # Left out, the percentage is the whole line.
    assert parse_void({"reason": "x", "action": {"action": {"type": "pending"}}}).action.kind is VoidLineAction.PENDING


def test_what_a_void_cannot_do_is_refused_at_its_field() -> None:
    assert fields({"reason": "  "}) == ["reason"]
    assert fields({}) == ["reason"]
    assert fields({"reason": "x", "action": {"percentage": 99.5, "action": {"type": "discard"}}}) == [
        "action.percentage"
    ]
    assert fields({"reason": "x", "action": {"percentage": True, "action": {"type": "discard"}}}) == [
        "action.percentage"
    ]
    assert fields({"reason": "x", "action": {"percentage": 100}}) == ["action.action"]
    assert fields({"reason": "x", "action": {"action": {"type": ""}}}) == ["action.action.type"]
    assert fields({"reason": "x", "action": {"action": {"type": "pending", "nextInvoiceAt": "soon"}}}) == [
        "action.action.nextInvoiceAt"
    ]
    twice = [{"lineId": "L1", "action": DISCARD}, {"lineId": "L1", "action": PENDING}]
    assert fields({"reason": "x", "overrides": twice}) == ["overrides[1].lineId"]
    # Every problem at once.
    assert fields({"reason": "", "overrides": [{"action": {"percentage": 10, "action": {"type": "keep"}}}]}) == [
        "reason",
        "overrides[0].lineId",
        "overrides[0].action.percentage",
        "overrides[0].action.action.type",
    ]
