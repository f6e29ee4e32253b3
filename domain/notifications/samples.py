"""Sample payload data for `rules/{id}/test`: the shape of a real event of the rule's type."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ulid import ULID

from domain.notifications.models import EventType, Rule, Threshold, ThresholdType
from domain.wiretime import rfc3339


def _entitlement_data(now: datetime) -> dict[str, Any]:
    feature_id = str(ULID())
    period_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    period_end = (period_start + timedelta(days=32)).replace(day=1)
    entitlement = {
        "id": str(ULID()),
        "type": "metered",
        "featureId": feature_id,
        "featureKey": "test_feature",
        "subjectKey": "test-subject",
        "isSoftLimit": False,
        "isUnlimited": False,
        "issueAfterReset": 0,
        "preserveOverageAtReset": False,
        "activeFrom": rfc3339(period_start),
        "measureUsageFrom": rfc3339(period_start),
        "lastReset": rfc3339(period_start),
        "currentUsagePeriod": {"from": rfc3339(period_start), "to": rfc3339(period_end)},
        "usagePeriod": {"anchor": rfc3339(period_start), "interval": "MONTH"},
        "createdAt": rfc3339(now),
        "updatedAt": rfc3339(now),
    }
    return {
        "entitlement": entitlement,
        "feature": {
            "id": feature_id,
            "key": "test_feature",
            "name": "Test feature",
            "createdAt": rfc3339(now),
            "updatedAt": rfc3339(now),
        },
        # A whole subject and a customer, as OpenMeter's test event has them (a real event has a
        # customer when the entitlement's subject belongs to one), so a consumer parses both alike.
        "subject": {
            "id": str(ULID()),
            "key": "test-subject",
            "displayName": "Test subject",
            "metadata": {},
            "createdAt": rfc3339(now),
            "updatedAt": rfc3339(now),
        },
        "customer": {
            "id": str(ULID()),
            "key": "test-customer",
            "name": "Test customer",
            "usageAttribution": {"subjectKeys": ["test-subject"]},
            "createdAt": rfc3339(now),
            "updatedAt": rfc3339(now),
        },
        "value": {"hasAccess": True, "balance": 25, "usage": 75, "overage": 0, "totalAvailableGrantAmount": 100},
    }


def _totals(amount: str) -> dict[str, str]:
    return {
        "amount": amount,
        "chargesTotal": "0",
        "discountsTotal": "0",
        "creditsTotal": "0",
        "taxesInclusiveTotal": "0",
        "taxesExclusiveTotal": "0",
        "taxesTotal": "0",
        "total": amount,
    }


def _invoice(now: datetime) -> dict[str, Any]:
    """A whole invoice as GET /billing/invoices/{id} shows it, like OpenMeter's test event (a
    simulated draft for a test customer with one flat fee of 1000 paid in advance), so a consumer
    parses the test event like a real one. Nothing is stored."""
    now = now.replace(microsecond=0)
    invoice_id = str(ULID())
    period = {"from": rfc3339(now - timedelta(days=30)), "to": rfc3339(now)}
    price = {"type": "flat", "amount": "1000", "paymentTerm": "in_advance"}
    line = {
        "id": str(ULID()),
        "name": "test flat fee",
        "type": "usage_based",
        "managedBy": "manual",
        "status": "valid",
        "currency": "USD",
        "period": period,
        "invoiceAt": rfc3339(now),
        "invoice": {"id": invoice_id},
        "price": price,
        "quantity": "1",
        "rateCard": {"price": price},
        "children": [],
        "metadata": {},
        "totals": _totals("1000"),
        "createdAt": rfc3339(now),
        "updatedAt": rfc3339(now),
    }
    return {
        "id": invoice_id,
        "type": "standard",
        "number": "TEST-INV-1",
        "currency": "USD",
        "status": "draft",
        "statusDetails": {
            "immutable": False,
            "failed": False,
            "extendedStatus": "draft.created",
            "availableActions": {},
        },
        "supplier": {"name": "Test supplier", "addresses": []},
        "customer": {
            "id": str(ULID()),
            "key": "test-customer",
            "name": "Test customer",
            "usageAttribution": {"subjectKeys": ["test-subject"]},
            "addresses": [],
        },
        "period": period,
        "lines": [line],
        "totals": _totals("1000"),
        "workflow": {
            "sourceBillingProfileId": str(ULID()),
            "workflow": {
                "collection": {"alignment": {"type": "subscription"}, "interval": "PT1H"},
                "invoicing": {"autoAdvance": True, "draftPeriod": "P0D", "dueAfter": "P30D"},
                "payment": {"collectionMethod": "charge_automatically"},
                "tax": {"enabled": True, "enforced": False},
            },
        },
        "validationIssues": [],
        "externalIds": {},
        "metadata": {},
        "createdAt": rfc3339(now),
        "updatedAt": rfc3339(now),
    }


def sample_data(rule: Rule, now: datetime) -> dict[str, Any]:
    match rule.type:
        case EventType.BALANCE_THRESHOLD:
            data = _entitlement_data(now)
            threshold = (
                rule.thresholds[0] if rule.thresholds else Threshold(Decimal(50), ThresholdType.USAGE_PERCENTAGE)
            )
            data["threshold"] = threshold.to_json()
            return data
        case EventType.ENTITLEMENT_RESET:
            return _entitlement_data(now)
        case EventType.INVOICE_CREATED | EventType.INVOICE_UPDATED:
            return _invoice(now)
