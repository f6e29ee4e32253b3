"""Notifications' pure rules: threshold selection and dedupe hash, retry timing, signatures, inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import xxhash
from standardwebhooks.webhooks import Webhook

from domain.errors import ValidationError
from domain.notifications import samples
from domain.notifications.delivery import (
    REASON_PENDING_EXPIRED,
    REASON_SENDING_EXPIRED,
    RetryPolicy,
    after_attempt,
    expired,
    sign,
)
from domain.notifications.models import (
    ChannelInput,
    DeliveryAttempt,
    DeliveryState,
    DeliveryStatus,
    EventType,
    ListChannelsInput,
    ListEventsInput,
    ListRulesInput,
    Rule,
    RuleInput,
    SortOrder,
    Threshold,
    ThresholdInput,
    ThresholdType,
    new_signing_secret,
)
from domain.notifications.ports import SendResult
from domain.notifications.thresholds import (
    DedupeKey,
    EntitlementValue,
    ThresholdKind,
    active_thresholds,
    same_threshold,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def th(value: float, kind: ThresholdType) -> Threshold:
    return Threshold(Decimal(repr(value)), kind)


def value(usage: float, total: float, overage: float = 0) -> EntitlementValue:
    balance = max(Decimal(repr(total)) - Decimal(repr(usage)), Decimal(0))
    return EntitlementValue(balance, Decimal(repr(usage)), Decimal(repr(overage)), Decimal(repr(total)))


RULE = (
    th(50, ThresholdType.USAGE_PERCENTAGE),
    th(75, ThresholdType.USAGE_PERCENTAGE),
    th(100, ThresholdType.USAGE_PERCENTAGE),
    th(30, ThresholdType.BALANCE_VALUE),
    th(10, ThresholdType.BALANCE_VALUE),
)


def test_nothing_fires_below_every_threshold() -> None:
    assert active_thresholds(RULE, value(40, 100)).items() == []


def test_most_advanced_usage_threshold_fires() -> None:
    active = active_thresholds(RULE, value(80, 100))
    assert active.usage == th(75, ThresholdType.USAGE_PERCENTAGE)
    # balance 20 < 30 but not < 10: the 30 balance threshold is the most advanced active one.
    assert active.balance == th(30, ThresholdType.BALANCE_VALUE)
    assert [k for k, _ in active.items()] == [ThresholdKind.USAGE, ThresholdKind.BALANCE]


def test_usage_threshold_is_strict() -> None:
    # usage_percentage activates when total*value/100 < usage: exactly 50 of 100 is not past 50%.
    assert active_thresholds(RULE, value(50, 100)).usage is None
    assert active_thresholds(RULE, value(50.5, 100)).usage == th(50, ThresholdType.USAGE_PERCENTAGE)


def test_lowest_active_balance_threshold_wins() -> None:
    assert active_thresholds(RULE, value(95, 100)).balance == th(10, ThresholdType.BALANCE_VALUE)


def test_balance_zero_threshold_activates_at_zero() -> None:
    rule = (th(0, ThresholdType.BALANCE_VALUE),)
    assert active_thresholds(rule, value(99, 100)).balance is None
    assert active_thresholds(rule, value(100, 100)).balance == th(0, ThresholdType.BALANCE_VALUE)


def test_no_grants_no_evaluation() -> None:
    rule = (th(1, ThresholdType.USAGE_VALUE), th(5, ThresholdType.BALANCE_VALUE))
    assert active_thresholds(rule, value(10, 0)).items() == []


def test_legacy_types_are_usage_kinds() -> None:
    rule = (th(10, ThresholdType.NUMBER), th(20, ThresholdType.USAGE_VALUE), th(90, ThresholdType.PERCENT))
    active = active_thresholds(rule, value(25, 200))
    assert active.usage == th(20, ThresholdType.USAGE_VALUE)
    assert active.balance is None


def test_dedupe_hash_matches_openmeter_v2_layout() -> None:
    key = DedupeKey(
        kind=ThresholdKind.USAGE,
        rule_id="01RULE",
        namespace="default",
        period_from=T0,
        period_to=T0 + timedelta(days=31),
        subject_key="customer-1",
        entitlement_id="01ENT",
        feature_id="01FEAT",
        measure_usage_from=None,
    )
    source = "usage01RULEdefault2026-01-01T00:00:00Z2026-02-01T00:00:00Zcustomer-101ENT01FEAT0001-01-01T00:00:00Z"
    assert key.hash() == "bsnap_v2_" + xxhash.xxh3_128_hexdigest(source.encode())
    assert replace(key, kind=ThresholdKind.BALANCE).hash() != key.hash()


def test_dedupe_hash_changes_with_period_and_kind() -> None:
    base = dict(
        rule_id="r",
        namespace="n",
        subject_key="s",
        entitlement_id="e",
        feature_id="f",
        measure_usage_from=T0,
        period_to=T0 + timedelta(days=1),
    )
    a = DedupeKey(kind=ThresholdKind.USAGE, period_from=T0, **base).hash()  # type: ignore[arg-type]
    b = DedupeKey(kind=ThresholdKind.BALANCE, period_from=T0, **base).hash()  # type: ignore[arg-type]
    c = DedupeKey(kind=ThresholdKind.USAGE, period_from=T0 + timedelta(seconds=1), **base).hash()  # type: ignore[arg-type]
    assert len({a, b, c}) == 3


def test_same_threshold_reads_stored_payloads() -> None:
    assert same_threshold({"value": 75, "type": "usage_percentage"}, th(75, ThresholdType.USAGE_PERCENTAGE))
    assert not same_threshold({"value": 75, "type": "usage_value"}, th(75, ThresholdType.USAGE_PERCENTAGE))
    assert not same_threshold(None, th(75, ThresholdType.USAGE_PERCENTAGE))


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = new_signing_secret()
    body = b'{"id":"01X","type":"entitlements.reset"}'
    now = int(datetime.now(UTC).timestamp())
    headers = {"webhook-id": "01X", "webhook-timestamp": str(now), "webhook-signature": sign(secret, "01X", now, body)}
    assert Webhook(secret).verify(body, headers) == {"id": "01X", "type": "entitlements.reset"}


def status(state: DeliveryState, attempts: int = 0, created: datetime = T0) -> DeliveryStatus:
    return DeliveryStatus(
        namespace="n",
        id="s",
        event_id="e",
        channel_id="c",
        state=state,
        reason="",
        created_at=created,
        updated_at=created,
        next_attempt=None,
        attempts=tuple(
            DeliveryAttempt(DeliveryState.FAILED, created + timedelta(seconds=i), 500, "", 1, None)
            for i in range(attempts)
        ),
        annotations={},
        sending_since=created,
    )


def test_backoff_doubles_with_bounded_jitter_and_cap() -> None:
    policy = RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=10), jitter=0.2)
    assert policy.backoff(1, lambda: 0.5) == timedelta(seconds=1)
    assert policy.backoff(3, lambda: 0.5) == timedelta(seconds=4)
    assert policy.backoff(10, lambda: 0.5) == timedelta(seconds=10)
    assert policy.backoff(2, lambda: 0.0) == timedelta(seconds=1.6)
    assert policy.backoff(2, lambda: 1.0) == timedelta(seconds=2.4)


def test_failed_attempt_schedules_retry_then_gives_up_at_deadline() -> None:
    policy = RetryPolicy(initial=timedelta(minutes=1), sending_timeout=timedelta(hours=1), jitter=0)
    failure = SendResult(503, "down", 3)
    outcome = after_attempt(status(DeliveryState.PENDING), failure, T0, policy, lambda: 0.5)
    assert outcome.state is DeliveryState.SENDING
    assert outcome.next_attempt == T0 + timedelta(minutes=1)
    # Third failure in a row: 4 minutes.
    outcome = after_attempt(status(DeliveryState.SENDING, attempts=2), failure, T0, policy, lambda: 0.5)
    assert outcome.next_attempt == T0 + timedelta(minutes=4)
    late = T0 + timedelta(minutes=59)
    outcome = after_attempt(status(DeliveryState.SENDING, attempts=6), failure, late, policy, lambda: 0.5)
    assert outcome.state is DeliveryState.FAILED
    assert outcome.reason == REASON_SENDING_EXPIRED
    assert after_attempt(status(DeliveryState.SENDING, 3), SendResult(204, "", 1), late, policy, lambda: 0.5).state is (
        DeliveryState.SUCCESS
    )


def test_deadlines_before_an_attempt() -> None:
    policy = RetryPolicy()
    assert expired(status(DeliveryState.PENDING), T0 + timedelta(hours=2), policy) is None
    gone = expired(status(DeliveryState.PENDING), T0 + timedelta(hours=3, seconds=1), policy)
    assert gone is not None and gone.reason == REASON_PENDING_EXPIRED
    assert expired(status(DeliveryState.SENDING), T0 + timedelta(hours=47), policy) is None
    gone = expired(status(DeliveryState.SENDING), T0 + timedelta(hours=48, seconds=1), policy)
    assert gone is not None and gone.state is DeliveryState.FAILED


def test_channel_input_validation() -> None:
    ChannelInput(type="WEBHOOK", name="ok", url="https://example.com/hook").validate()
    with pytest.raises(ValidationError) as caught:
        ChannelInput(type="EMAIL", name="", url="ftp://x", signing_secret="short").validate()
    assert {v.field for v in caught.value.violations} == {"type", "name", "url", "signingSecret"}
    assert new_signing_secret().startswith("whsec_")


def test_rule_input_validation() -> None:
    channel = "01J8J4RXH778XB056JS088PCYT"
    _rule_type, thresholds = RuleInput(
        type="entitlements.balance.threshold",
        name="r",
        channels=[channel],
        thresholds=[ThresholdInput(50, "usage_percentage"), ThresholdInput(0, "balance_value")],
        features=["tokens"],
    ).validate()
    assert len(thresholds) == 2
    with pytest.raises(ValidationError) as caught:
        RuleInput(
            type="entitlements.balance.threshold",
            name="r",
            channels=[channel] * 6,
            thresholds=[ThresholdInput(0, "usage_value"), ThresholdInput(1, "bogus")]
            + [ThresholdInput(1, "NUMBER")] * 9,
        ).validate()
    fields = {v.field for v in caught.value.violations}
    assert {"channels", "thresholds", "thresholds[0].value", "thresholds[1].type"} <= fields
    with pytest.raises(ValidationError):
        RuleInput(type="invoice.created", name="r", channels=[channel], features=["tokens"]).validate()
    with pytest.raises(ValidationError):
        RuleInput(type="nope", name="r", channels=[channel]).validate()


def test_list_default_orders_are_openmeters() -> None:
    """Without `order`, rules list oldest first (ASC by id); channels and events newest first
    (OpenMeter's httpdriver ListRules / ListChannels / ListEvents defaults)."""
    assert ListRulesInput().validate()[1:] == (SortOrder.ASC, "id")
    assert ListChannelsInput().validate()[1:] == (SortOrder.DESC, "id")
    assert ListEventsInput().validate()[1:] == (SortOrder.DESC, "createdAt")
    assert ListRulesInput(order="desc").validate()[1] is SortOrder.DESC


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_AAA=" + "A" * 32,  # data after padding: Python would sign with a 2-byte key
        "whsec_" + "A" * 32 + "==",  # an incomplete quantum
        "A" * 33,  # unpadded
    ],
)
def test_signing_secret_must_be_standard_base64(secret: str) -> None:
    """OpenMeter's ValidateSigningSecret (webhook/secret/secret.go) decodes with Go's
    base64.StdEncoding, which refuses these; a lenient decode would sign with a different key than
    the receiver's library derives from the same secret."""
    with pytest.raises(ValidationError) as caught:
        ChannelInput(type="WEBHOOK", name="ok", url="https://example.com/hook", signing_secret=secret).validate()
    assert [v.field for v in caught.value.violations] == ["signingSecret"]


def test_signing_secret_accepts_openmeters_forms() -> None:
    for secret in (new_signing_secret(), "whsec_" + "A" * 43 + "=", "A" * 34 + "==", "A" * 32):
        ChannelInput(type="WEBHOOK", name="ok", url="https://example.com/hook", signing_secret=secret).validate()


# The fields the reference contract requires of each object in an entitlement event's data
# (NotificationEventEntitlementValuePayloadBase: EntitlementMetered, Feature, Subject, Customer).
REQUIRED_IN_ENTITLEMENT_DATA = {
    "entitlement": {
        "type",
        "createdAt",
        "updatedAt",
        "activeFrom",
        "id",
        "subjectKey",
        "featureKey",
        "featureId",
        "lastReset",
        "currentUsagePeriod",
        "measureUsageFrom",
        "usagePeriod",
    },
    "feature": {"createdAt", "updatedAt", "key", "name", "id"},
    "subject": {"createdAt", "updatedAt", "id", "key"},
    "customer": {"id", "name", "createdAt", "updatedAt"},
    "value": {"hasAccess"},
}


def _sample_rule(kind: EventType) -> Rule:
    now = datetime(2025, 3, 14, 12, tzinfo=UTC)
    return Rule(
        namespace="ns",
        id="01JRULE0000000000000000000",
        type=kind,
        name="r",
        disabled=False,
        channel_ids=(),
        thresholds=(),
        features=(),
        metadata={},
        annotations={},
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize("kind", [EventType.BALANCE_THRESHOLD, EventType.ENTITLEMENT_RESET])
def test_rule_test_sample_has_every_field_a_real_entitlement_event_has(kind: EventType) -> None:
    """OpenMeter's test event (notification/internal/rule.go) carries a whole subject and a customer,
    so a consumer written against it parses the test event like a real one."""
    data = samples.sample_data(_sample_rule(kind), datetime(2025, 3, 14, 12, tzinfo=UTC))
    for name, required in REQUIRED_IN_ENTITLEMENT_DATA.items():
        assert name in data, name
        assert required <= set(data[name]), (name, sorted(required - set(data[name])))
    assert data["customer"]["usageAttribution"]["subjectKeys"] == [data["subject"]["key"]]
    assert data["entitlement"]["subjectKey"] == data["subject"]["key"]
    assert data["entitlement"]["featureId"] == data["feature"]["id"]


# What the reference contract requires of an invoice event's data (Invoice), of its totals,
# status details, workflow and lines (InvoiceLine).
REQUIRED_IN_INVOICE = {
    "id",
    "createdAt",
    "updatedAt",
    "type",
    "supplier",
    "customer",
    "number",
    "currency",
    "totals",
    "status",
    "statusDetails",
    "workflow",
}
REQUIRED_IN_TOTALS = {
    "amount",
    "chargesTotal",
    "discountsTotal",
    "creditsTotal",
    "taxesInclusiveTotal",
    "taxesExclusiveTotal",
    "taxesTotal",
    "total",
}
REQUIRED_IN_LINE = {
    "name",
    "createdAt",
    "updatedAt",
    "id",
    "managedBy",
    "status",
    "currency",
    "totals",
    "period",
    "invoiceAt",
    "type",
}


@pytest.mark.parametrize("kind", [EventType.INVOICE_CREATED, EventType.INVOICE_UPDATED])
def test_rule_test_sample_is_a_whole_invoice(kind: EventType) -> None:
    """OpenMeter's invoice test event is a simulated invoice with a customer and a flat fee line
    (notification/internal/rule.go, newTestInvoicePayload), mapped like a real event's."""
    data = samples.sample_data(_sample_rule(kind), datetime(2025, 3, 14, 12, tzinfo=UTC))
    assert set(data) >= REQUIRED_IN_INVOICE, sorted(REQUIRED_IN_INVOICE - set(data))
    assert set(data["totals"]) >= REQUIRED_IN_TOTALS
    assert {"immutable", "failed", "extendedStatus", "availableActions"} <= set(data["statusDetails"])
    assert {"sourceBillingProfileId", "workflow"} <= set(data["workflow"])
    assert {"id", "name", "usageAttribution"} <= set(data["customer"])
    [line] = data["lines"]
    assert set(line) >= REQUIRED_IN_LINE, sorted(REQUIRED_IN_LINE - set(line))
    assert set(line["totals"]) >= REQUIRED_IN_TOTALS
    assert line["totals"]["total"] == data["totals"]["total"]
    assert data["period"] == line["period"]
