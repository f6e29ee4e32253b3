"""A two-phase plan (a free trial month, then a base fee and metered tokens) in OpenMeter's JSON,
shared by the subscription tests."""

from __future__ import annotations

from typing import Any


def plan_body(key: str, feature: str, base: str = "49") -> dict[str, Any]:
    return {
        "key": key,
        "name": key.title(),
        "currency": "USD",
        "billingCadence": "P1M",
        "phases": [
            {
                "key": "trial",
                "name": "Trial",
                "duration": "P1M",
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "base",
                        "name": "Base",
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": "0", "paymentTerm": "in_advance"},
                    }
                ],
            },
            {
                "key": "default",
                "name": "Default",
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "base",
                        "name": "Base",
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": base, "paymentTerm": "in_advance"},
                    },
                    {
                        "type": "usage_based",
                        "key": feature,
                        "name": "Tokens",
                        "featureKey": feature,
                        "billingCadence": "P1M",
                        "price": {"type": "unit", "amount": "0.001"},
                        "entitlementTemplate": {"type": "metered", "issueAfterReset": 1000},
                    },
                ],
            },
        ],
    }
