"""Catalog inputs: OpenMeter-shaped JSON in, models or field-path problems out; durations; currencies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from domain.catalog import currencies
from domain.catalog.addons import Addon, PlanAddonInput, check_addon, check_plan_addon, parse_addon, parse_plan_addon
from domain.catalog.durations import Duration, DurationError
from domain.catalog.models import Feature
from domain.catalog.plans import Plan, PlanStatus, check_plan, parse_plan, plan_status
from domain.catalog.prices import PackagePrice, TieredMode, TieredPrice, UnitPrice
from domain.catalog.ratecards import FeatureFacts, TaxBehavior, TaxConfig, merge_tax_configs
from domain.catalog.wire import Issues


def _plan(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": "pro",
        "name": "Pro",
        "currency": "USD",
        "billingCadence": "P1M",
        "phases": [
            {
                "key": "default",
                "name": "Default",
                "duration": None,
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "base",
                        "name": "Base fee",
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": "49", "paymentTerm": "in_advance"},
                    },
                    {
                        "type": "usage_based",
                        "key": "tokens",
                        "name": "Tokens",
                        "featureKey": "tokens",
                        "billingCadence": "P1M",
                        "price": {
                            "type": "tiered",
                            "mode": "graduated",
                            "tiers": [
                                {"upToAmount": "1000", "unitPrice": {"type": "unit", "amount": "0.01"}},
                                {"upToAmount": "5000", "unitPrice": {"type": "unit", "amount": "0.008"}},
                                {"unitPrice": {"type": "unit", "amount": "0.005"}, "flatPrice": None},
                            ],
                            "minimumAmount": "10",
                        },
                        "discounts": {"percentage": {"percentage": 10}, "usage": {"quantity": "100"}},
                        "entitlementTemplate": {"type": "metered", "isSoftLimit": True, "issueAfterReset": 0},
                    },
                ],
            }
        ],
    }
    body.update(overrides)
    return body


def _fields(issues: Any) -> dict[str, str]:
    return {v.field: v.code for v in issues.errors}


def test_a_valid_plan_reads_into_models() -> None:
    plan, issues = parse_plan(_plan())
    assert issues.errors == [] and plan is not None
    tokens = plan.phases[0].rate_cards[1]
    assert isinstance(tokens.price, TieredPrice) and tokens.price.mode is TieredMode.GRADUATED
    assert tokens.price.tiers[2].up_to_amount is None
    assert tokens.price.commitments.minimum_amount == Decimal(10)
    assert tokens.discounts.usage_quantity == Decimal(100) and tokens.discounts.percentage == Decimal(10)
    # A metered template's usage period defaults to the rate card's cadence.
    assert tokens.usage_period == Duration(months=1)
    assert tokens.rest()["entitlementTemplate"]["usagePeriod"] == "P1M"


@pytest.mark.parametrize(
    ("tiers", "field", "code"),
    [
        (
            [
                {"upToAmount": "10", "unitPrice": {"amount": "1"}},
                {"upToAmount": "5", "unitPrice": {"amount": "1"}},
                {"unitPrice": {"amount": "1"}},
            ],
            "phases[0].rateCards[1].price.tiers[1].upToAmount",
            "tiers_out_of_order",
        ),
        (
            [{"unitPrice": {"amount": "1"}}, {"unitPrice": {"amount": "2"}}],
            "phases[0].rateCards[1].price.tiers[0].upToAmount",
            "open_ended_tier_not_last",
        ),
        (
            [{"upToAmount": "10", "unitPrice": {"amount": "1"}}],
            "phases[0].rateCards[1].price.tiers[0].upToAmount",
            "missing_open_ended_tier",
        ),
        (
            [{"upToAmount": "10", "unitPrice": {"amount": "-1"}}, {"unitPrice": {"amount": "1"}}],
            "phases[0].rateCards[1].price.tiers[0].unitPrice.amount",
            "negative",
        ),
        (
            [{"upToAmount": "10"}, {"unitPrice": {"amount": "1"}}],
            "phases[0].rateCards[1].price.tiers[0]",
            "tier_without_price",
        ),
    ],
)
def test_bad_tiers_are_refused_with_their_field_path(tiers: list[Any], field: str, code: str) -> None:
    body = _plan()
    body["phases"][0]["rateCards"][1]["price"]["tiers"] = tiers
    plan, issues = parse_plan(body)
    assert plan is None
    assert _fields(issues).get(field) == code, issues.errors


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (lambda b: b.update(currency="XYZ"), "currency", "currency_invalid"),
        (lambda b: b.update(billingCadence="monthly"), "billingCadence", "invalid_duration"),
        # Usage periods reset on whole minutes (the entitlement engine's resolution): a cadence or
        # template period with seconds was refused only when a subscription made the entitlement.
        (lambda b: b.update(billingCadence="PT1H30S"), "billingCadence", "plan_billing_cadence_invalid"),
        (
            lambda b: b["phases"][0]["rateCards"][1].update(billingCadence="PT2H0M30S"),
            "phases[0].rateCards[1].billingCadence",
            "not_whole_minutes",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][1]["entitlementTemplate"].update(usagePeriod="PT1H30S"),
            "phases[0].rateCards[1].entitlementTemplate.usagePeriod",
            "not_whole_minutes",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][0]["price"].update(amount="-5"),
            "phases[0].rateCards[0].price.amount",
            "negative",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][0]["price"].update(amount="ten"),
            "phases[0].rateCards[0].price.amount",
            "invalid_number",
        ),
        # Python's Decimal reads digit separators and non-ASCII digits; a price must be plain
        # digits, or "1_000" is billed as 1000 and "١٢" (Arabic-Indic) as 12.
        (
            lambda b: b["phases"][0]["rateCards"][0]["price"].update(amount="1_000"),
            "phases[0].rateCards[0].price.amount",
            "invalid_number",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][0]["price"].update(amount="\u0661\u0662"),
            "phases[0].rateCards[0].price.amount",
            "invalid_number",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][0].update(price={"type": "unit", "amount": "1"}),
            "phases[0].rateCards[0].price.type",
            "rate_card_only_flat_price_allowed",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][1].update(key="other"),
            "phases[0].rateCards[1].key",
            "rate_card_key_feature_key_mismatch",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][1]["discounts"]["percentage"].update(percentage=120),
            "phases[0].rateCards[1].discounts.percentage.percentage",
            "percentage_discount_invalid_value",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][1]["price"].update(minimumAmount="100", maximumAmount="50"),
            "phases[0].rateCards[1].price.minimumAmount",
            "minimum_above_maximum",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][1].update(
                key="base",
                featureKey=None,
                entitlementTemplate=None,
                price={"type": "flat", "amount": "1"},
                discounts=None,
            ),
            "phases[0].rateCards[1].key",
            "rate_card_duplicated_key",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][0].update(discounts={"usage": {"quantity": "5"}}),
            "phases[0].rateCards[0].discounts.usage",
            "usage_discount_with_flat_price",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][1].update(featureKey=None, key="tokens", entitlementTemplate=None),
            "phases[0].rateCards[1].featureKey",
            "usage_based_price_with_no_feature",
        ),
        (lambda b: b.update(phases=[]), "phases", "plan_with_no_phases"),
        (lambda b: b.update(key="Not A Key"), "key", "invalid_key"),
        (
            lambda b: b["phases"][0]["rateCards"][1].update(
                price={"type": "package", "amount": "5", "quantityPerPackage": "0"}
            ),
            "phases[0].rateCards[1].price.quantityPerPackage",
            "not_positive",
        ),
        (
            lambda b: b["phases"][0]["rateCards"][1].update(entitlementTemplate={"type": "static", "config": "[1,2]"}),
            "phases[0].rateCards[1].entitlementTemplate.config",
            "entitlement_template_invalid_json_config",
        ),
    ],
)
def test_bad_plans_are_refused_with_their_field_path(mutate: Any, field: str, code: str) -> None:
    body = _plan()
    mutate(body)
    plan, issues = parse_plan(body)
    assert plan is None
    assert _fields(issues).get(field) == code, issues.errors


def test_unaligned_cadence_is_a_warning_on_create_and_an_error_at_publish() -> None:
    body = _plan()
    body["phases"][0]["rateCards"][0]["billingCadence"] = "P1W"
    plan, issues = parse_plan(body)
    assert plan is not None and not issues.errors
    features = {"tokens": FeatureFacts("tokens", archived=False, has_meter=True)}
    check_plan(plan, features, strict=False, issues=issues)
    assert [(w.field, w.code) for w in issues.warnings] == [
        ("phases[0].rateCards[0].billingCadence", "rate_card_billing_cadence_unaligned")
    ]
    _, strict = parse_plan(body)
    check_plan(plan, features, strict=True, issues=strict)
    assert [(e.field, e.code) for e in strict.errors] == [
        ("phases[0].rateCards[0].billingCadence", "rate_card_billing_cadence_unaligned")
    ]


def test_features_must_exist_and_templates_fit_them() -> None:
    plan, issues = parse_plan(_plan())
    assert plan is not None
    check_plan(plan, {}, strict=False, issues=issues)
    assert _fields(issues) == {"phases[0].rateCards[1].featureKey": "rate_card_feature_not_found"}
    plan, issues = parse_plan(_plan())
    assert plan is not None
    check_plan(plan, {"tokens": FeatureFacts("tokens", False, has_meter=False)}, strict=False, issues=issues)
    # A usage price on a feature without a meter cannot be rated: refused; the template: a warning.
    # The codes are OpenMeter's (ErrRateCardUsageBasedPriceWith...: no rate_card_ prefix).
    assert _fields(issues) == {"phases[0].rateCards[1].featureKey": "usage_based_price_with_feature_and_no_meter"}
    assert [w.code for w in issues.warnings] == ["rate_card_entitlement_template_type_mismatch"]


def test_phase_shape_is_checked() -> None:
    body = _plan()
    first = dict(body["phases"][0], key="trial", name="Trial", duration=None)
    body["phases"] = [first, dict(body["phases"][0], duration="P1M")]
    plan, issues = parse_plan(body)
    assert plan is not None
    check_plan(plan, {"tokens": FeatureFacts("tokens", False, True)}, strict=True, issues=issues)
    assert _fields(issues) == {
        "phases[0].duration": "plan_has_non_last_phase_with_no_duration",
        "phases[1].duration": "plan_has_last_phase_with_duration",
    }


def test_every_price_type_reads() -> None:
    for price, kind in [
        ({"type": "unit", "amount": "0.5", "maximumAmount": "100"}, UnitPrice),
        ({"type": "package", "amount": "10", "quantityPerPackage": "20"}, PackagePrice),
        (
            {
                "type": "tiered",
                "mode": "volume",
                "tiers": [{"upToAmount": 10, "flatPrice": {"amount": "1"}}, {"unitPrice": {"amount": "2"}}],
            },
            TieredPrice,
        ),
    ]:
        body = _plan()
        body["phases"][0]["rateCards"][1]["price"] = price
        plan, issues = parse_plan(body)
        assert not issues.errors and plan is not None
        assert isinstance(plan.phases[0].rate_cards[1].price, kind)
        assert plan.phases[0].rate_cards[1].rest()["price"]["type"] == price["type"]


def test_addon_and_plan_addon_inputs() -> None:
    addon, issues = parse_addon(
        {
            "key": "extra",
            "name": "Extra",
            "instanceType": "multiple",
            "currency": "EUR",
            "rateCards": [
                {
                    "type": "flat_fee",
                    "key": "seat",
                    "name": "Seat",
                    "billingCadence": "P1M",
                    "price": {"type": "flat", "amount": "5"},
                }
            ],
        }
    )
    assert not issues.errors and addon is not None and addon.currency == "EUR"
    _, _, issues = parse_plan_addon({"addonId": "nope", "fromPlanPhase": "default", "maxQuantity": 0}, create=True)
    assert _fields(issues) == {"addonId": "invalid_id", "maxQuantity": "plan_addon_max_quantity_must_be_set"}


def test_a_multiple_instance_add_on_with_a_unit_price_carries_openmeters_code() -> None:
    # OpenMeter's ErrAddonInvalidPriceForMultiInstance has the code
    # addon_invalid_ratecard_price_for_multi_instance (warning on a draft, refusing the publish);
    # Tally named it addon_invalid_price_for_multi_instance, which clients matching on the code miss.
    addon, issues = parse_addon(
        {
            "key": "calls",
            "name": "Calls",
            "instanceType": "multiple",
            "rateCards": [
                {
                    "type": "usage_based",
                    "key": "calls",
                    "name": "Calls",
                    "featureKey": "calls",
                    "billingCadence": "P1M",
                    "price": {"type": "unit", "amount": "0.1"},
                }
            ],
        }
    )
    assert addon is not None and not issues.errors
    features = {"calls": FeatureFacts("calls", False, True)}
    check_addon(addon, features, False, issues)
    assert [(w.field, w.code) for w in issues.warnings] == [
        ("rateCards[0].price", "addon_invalid_ratecard_price_for_multi_instance")
    ]
    strict = Issues()
    check_addon(addon, features, True, strict)
    assert _fields(strict) == {"rateCards[0].price": "addon_invalid_ratecard_price_for_multi_instance"}


def test_an_add_on_bills_its_priced_rate_cards_on_one_cadence() -> None:
    """OpenMeter's Addon.Publishable refuses an add-on whose priced, recurring rate cards have more
    than one billing cadence (ValidateAddonHasSingleBillingCadence, rate_card_multiple_billing_cadence,
    productcatalog/addon.go); one-time fees and free rate cards do not count, and P1Y equals P12M."""

    def card(key: str, cadence: str | None, price: dict[str, Any] | None) -> dict[str, Any]:
        return {"type": "flat_fee", "key": key, "name": key, "billingCadence": cadence, "price": price}

    flat = {"type": "flat", "amount": "5"}
    addon, issues = parse_addon(
        {
            "key": "extras",
            "name": "Extras",
            "instanceType": "single",
            "rateCards": [
                card("yearly", "P1Y", flat),
                card("also_yearly", "P12M", flat),
                card("once", None, flat),
                card("free_monthly", "P1M", None),
                card("monthly", "P1M", flat),
            ],
        }
    )
    assert addon is not None and not issues.errors
    check_addon(addon, {}, False, issues)
    assert [(w.field, w.code) for w in issues.warnings] == [
        ("rateCards[4].billingCadence", "rate_card_multiple_billing_cadence")
    ]
    strict = Issues()
    check_addon(addon, {}, True, strict)
    assert _fields(strict) == {"rateCards[4].billingCadence": "rate_card_multiple_billing_cadence"}
    single, issues = parse_addon(
        {
            "key": "x",
            "name": "X",
            "instanceType": "single",
            "rateCards": [card("a", "P1Y", flat), card("b", "P12M", flat)],
        }
    )
    assert single is not None
    check_addon(single, {}, True, issues)
    assert not issues.errors and not issues.warnings


def _overlay_issues(
    addon_cards: list[dict[str, Any]], plan_cards: list[dict[str, Any]] | None = None
) -> set[tuple[str, str]]:
    """The problems of offering an active add-on with `addon_cards` on a draft of `_plan()` (whose
    phase's rate cards may be replaced by `plan_cards`), from its only phase on."""
    body = _plan()
    if plan_cards is not None:
        body["phases"][0]["rateCards"] = plan_cards
    content, issues = parse_plan(body)
    addon_content, addon_issues = parse_addon(
        {"key": "extra", "name": "Extra", "instanceType": "single", "currency": "USD", "rateCards": addon_cards}
    )
    assert content is not None and addon_content is not None, (issues.errors, addon_issues.errors)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    plan = Plan("01JGRZ0000000000000000PLAN", "default", 1, content, now, now)
    addon = Addon("01JGRZ000000000000000ADDON", "default", 1, addon_content, now, now, effective_from=now)
    found = Issues()
    check_plan_addon(plan, addon, PlanAddonInput("default"), now, found)
    return {(v.field, v.code) for v in found.errors}


def test_an_add_on_rate_card_over_a_plan_rate_card_must_be_compatible() -> None:
    """OpenMeter's RateCardWithOverlay.Validate (productcatalog/ratecard.go), run for every add-on
    rate card that shares its key with a plan phase's: two prices must both be flat with one
    payment term, two percentage discounts cannot stack, two entitlement templates must be of one
    type, not static, and metered ones must share their usage period."""
    usage = {
        "type": "usage_based",
        "key": "tokens",
        "name": "Tokens",
        "featureKey": "tokens",
        "billingCadence": "P1M",
        "price": {"type": "unit", "amount": "0.5"},
        "discounts": {"percentage": {"percentage": 5}},
        "entitlementTemplate": {"type": "metered", "issueAfterReset": 0, "usagePeriod": "P1D"},
    }
    base = {
        "type": "flat_fee",
        "key": "base",
        "name": "Base",
        "billingCadence": "P1M",
        "price": {"type": "flat", "amount": "10", "paymentTerm": "in_arrears"},
    }
    assert _overlay_issues([usage, base]) >= {
        ("addon.rateCards[0].price", "rate_card_only_flat_price_allowed"),
        ("addon.rateCards[0].discounts.percentage", "rate_card_percentage_discount_not_allowed"),
        ("addon.rateCards[0].entitlementTemplate", "rate_card_metered_entitlement_template_usage_period_mismatch"),
        ("addon.rateCards[1].price.paymentTerm", "rate_card_price_payment_term_mismatch"),
    }
    # Flat on flat with the plan's payment term, no discount and the same usage period: compatible.
    same_term = dict(base, price={"type": "flat", "amount": "10", "paymentTerm": "in_advance"})
    assert _overlay_issues([same_term]) == set()

    def seats(template: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "flat_fee",
            "key": "seats",
            "name": "Seats",
            "featureKey": "seats",
            "entitlementTemplate": template,
        }

    static = {"type": "static", "config": '{"a": 1}'}
    assert _overlay_issues([seats(static)], [seats(static)]) == {
        ("addon.rateCards[0].entitlementTemplate", "rate_card_static_entitlement_template_not_allowed")
    }
    assert _overlay_issues([seats({"type": "boolean"})], [seats(static)]) == {
        ("addon.rateCards[0].entitlementTemplate", "rate_card_entitlement_template_type_mismatch")
    }
    assert _overlay_issues([seats({"type": "boolean"})], [seats({"type": "boolean"})]) == set()


def test_plan_status_is_derived_from_the_effective_period() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    before, after = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    assert plan_status(None, None, now) is PlanStatus.DRAFT
    assert plan_status(before, None, now) is PlanStatus.ACTIVE
    assert plan_status(after, None, now) is PlanStatus.SCHEDULED
    assert plan_status(before, now, now) is PlanStatus.ARCHIVED


@pytest.mark.parametrize(
    ("a", "b", "aligned"),
    [
        ("P1M", "P1M", True),
        ("P1Y", "P1M", True),
        ("P3M", "P1M", True),
        ("P1M", "P1D", True),
        ("P1W", "P1D", True),
        ("P1D", "PT1H", True),
        ("P2W", "P1W", True),
        ("P12M", "P1Y", True),
        ("P1M", "P1W", False),
        ("P1M", "P2M", True),
        ("P2M", "P3M", False),
        ("P1D", "PT2H", False),
        ("P1M", "P30D", False),
    ],
)
def test_cadence_alignment(a: str, b: str, aligned: bool) -> None:
    assert Duration.parse(a).aligned_with(Duration.parse(b)) is aligned
    assert Duration.parse(b).aligned_with(Duration.parse(a)) is aligned


def test_durations_parse_print_and_add() -> None:
    assert Duration.parse("P1Y2M").iso() == "P1Y2M"
    assert Duration.parse("P14D").iso() == "P2W"
    assert Duration.parse("PT90M").iso() == "PT1H30M"
    for bad in ("", "P", "1M", "P1.5M", "PT", "P-1M"):
        # Refused every time, not only the first (parses are remembered, refusals are not).
        for _ in range(2):
            with pytest.raises(DurationError):
                Duration.parse(bad)
    assert Duration.parse("P1M") == Duration(months=1) and Duration.parse("P1M") is Duration.parse("P1M")
    jan31 = datetime(2026, 1, 31, tzinfo=UTC)
    assert Duration.parse("P1M").add_to(jan31) == datetime(2026, 2, 28, tzinfo=UTC)
    assert Duration.parse("P1M").add_to(jan31, times=2) == datetime(2026, 3, 31, tzinfo=UTC)


def test_currencies_come_with_minor_units() -> None:
    assert currencies.get("USD").minor_units == 2 and currencies.get("USD").symbol == "$"
    assert currencies.get("JPY").minor_units == 0
    assert currencies.get("BHD").minor_units == 3
    assert currencies.lookup("XAU") is None  # no minor units: cannot bill in gold
    assert currencies.lookup("usd") is None
    assert len(currencies.list_currencies()) > 150
    assert currencies.get("USD").round(Decimal("0.005")) == Decimal("0.01")
    assert currencies.get("JPY").round(Decimal("2.5")) == Decimal("3")


def test_a_line_tax_config_merges_over_the_default_setting_by_setting() -> None:
    default = TaxConfig(
        TaxBehavior.EXCLUSIVE, stripe_code="txcd_10000000", custom_invoicing_code="VAT", tax_code_id=None
    )
    assert merge_tax_configs(default, None) == default
    assert merge_tax_configs(None, default) == default
    assert merge_tax_configs(None, None) is None
    # The behavior and the custom invoicing code are taken one by one.
    assert merge_tax_configs(default, TaxConfig(TaxBehavior.INCLUSIVE)) == TaxConfig(
        TaxBehavior.INCLUSIVE, "txcd_10000000", "VAT"
    )
    # The Stripe code and the tax code ID name one tax code: a line naming its own by either keeps
    # neither of the default's.
    coded = TaxConfig(TaxBehavior.EXCLUSIVE, stripe_code="txcd_10000000", tax_code_id="01JQ8N4Y5Z6X7W8V9T0S1R2Q3P")
    assert merge_tax_configs(coded, TaxConfig(stripe_code="txcd_20030000")) == TaxConfig(
        TaxBehavior.EXCLUSIVE, stripe_code="txcd_20030000"
    )
    assert merge_tax_configs(coded, TaxConfig(tax_code_id="01JQ8N4Y5Z6X7W8V9T0S1R2Q3Q")) == TaxConfig(
        TaxBehavior.EXCLUSIVE, tax_code_id="01JQ8N4Y5Z6X7W8V9T0S1R2Q3Q"
    )


def test_a_feature_writes_its_times_in_utc_whatever_zone_they_were_read_in() -> None:
    # A time given in another zone is the same instant; the wire writes it in UTC, as the other resources do.
    plus_two = timezone(timedelta(hours=2))
    feature = Feature(
        id="f1",
        namespace="ns",
        key="tokens",
        name="Tokens",
        created_at=datetime(2026, 11, 1, 2, 0, tzinfo=plus_two),
        updated_at=datetime(2026, 11, 1, 3, 0, tzinfo=plus_two),
        archived_at=datetime(2026, 11, 1, 4, 0, tzinfo=plus_two),
    )
    out = feature.rest()
    assert (out["createdAt"], out["updatedAt"], out["archivedAt"]) == (
        "2026-11-01T00:00:00Z",
        "2026-11-01T01:00:00Z",
        "2026-11-01T02:00:00Z",
    )
