"""Rate cards: what a plan phase or add-on sells (OpenMeter's `RateCardFlatFee` / `RateCardUsageBased`).

A `RateCard` has a `type` (flat_fee | usage_based), a `key` (equal to its `feature_key` when it has
one), a `price` (None: free), `discounts`, an `entitlement_template` (metered | static | boolean,
only with a feature), a `tax_config` and a `billing_cadence` (`Duration`; None on a flat fee means
a one-time fee). `parse_rate_card` reads one from OpenMeter's JSON with field paths; feature-dependent
checks (the feature exists, fits the template) live in `check_rate_card_features`, called by the
service with the features it resolved.

Which problems are warnings: a rate card cadence that does not align with the plan's, an
entitlement template that does not fit its feature, and a metered template without
`issueAfterReset`, are kept on a draft as `validationErrors` (OpenMeter accepts them at create)
and refused at publish. Everything else is refused at once.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from domain.catalog.durations import Duration, DurationError
from domain.catalog.prices import NO_DISCOUNTS, Discounts, FlatPrice, Price, parse_discounts, parse_price
from domain.catalog.wire import Obj, Reader, join
from domain.customers.models import ULID_RE

ONE_HOUR: Final = Duration(seconds=3600)
STRIPE_TAX_CODE_PREFIX: Final = "txcd_"


class RateCardType(enum.StrEnum):
    FLAT_FEE = "flat_fee"
    USAGE_BASED = "usage_based"


class TemplateType(enum.StrEnum):
    METERED = "metered"
    STATIC = "static"
    BOOLEAN = "boolean"


# Usage periods (a template's own, or the billing cadence it defaults to) reset on whole minutes,
# the entitlement engine's resolution: a period such as PT1H30S would be refused only when a
# subscription makes the entitlement.
_WHOLE_MINUTES = "must be a whole number of minutes (no seconds part)"


class TaxBehavior(enum.StrEnum):
    INCLUSIVE = "inclusive"
    EXCLUSIVE = "exclusive"


@dataclass(frozen=True, slots=True)
class TaxConfig:
    behavior: TaxBehavior | None = None
    stripe_code: str | None = None
    custom_invoicing_code: str | None = None
    tax_code_id: str | None = None

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.behavior is not None:
            out["behavior"] = self.behavior.value
        if self.stripe_code is not None:
            out["stripe"] = {"code": self.stripe_code}
        if self.custom_invoicing_code is not None:
            out["customInvoicing"] = {"code": self.custom_invoicing_code}
        if self.tax_code_id is not None:
            out["taxCodeId"] = self.tax_code_id
        return out


def merge_tax_configs(base: TaxConfig | None, overrides: TaxConfig | None) -> TaxConfig | None:
    """`overrides` on top of `base`, setting by setting (OpenMeter's MergeTaxConfigs): a standard
    invoice's lines carry their own tax config over the workflow's default, so the app computing
    the tax (custom invoicing's integrator) reads one complete config per line. The Stripe code and
    the tax code ID name one tax code two ways and are taken together, so a line that names its
    own code never keeps the default's other one."""
    if base is None or overrides is None:
        return overrides or base
    if overrides.stripe_code is not None or overrides.tax_code_id is not None:
        stripe_code, tax_code_id = overrides.stripe_code, overrides.tax_code_id
    else:
        stripe_code, tax_code_id = base.stripe_code, base.tax_code_id
    return TaxConfig(
        behavior=overrides.behavior or base.behavior,
        stripe_code=stripe_code,
        custom_invoicing_code=overrides.custom_invoicing_code or base.custom_invoicing_code,
        tax_code_id=tax_code_id,
    )


@dataclass(frozen=True, slots=True)
class EntitlementTemplate:
    type: TemplateType
    metadata: Mapping[str, str] = field(default_factory=dict)
    # metered
    is_soft_limit: bool = False
    issue_after_reset: float | None = None
    issue_after_reset_priority: int = 1
    preserve_overage_at_reset: bool = False
    # None: the rate card's billing cadence (see `RateCard.usage_period`).
    usage_period: Duration | None = None
    # static: the JSON text of an object
    config: str | None = None

    def rest(self, default_usage_period: Duration | None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.value}
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.type is TemplateType.METERED:
            out["isSoftLimit"] = self.is_soft_limit
            if self.issue_after_reset is not None:
                out["issueAfterReset"] = self.issue_after_reset
            out["issueAfterResetPriority"] = self.issue_after_reset_priority
            out["preserveOverageAtReset"] = self.preserve_overage_at_reset
            period = self.usage_period or default_usage_period
            if period is not None:
                out["usagePeriod"] = period.iso()
        elif self.type is TemplateType.STATIC and self.config is not None:
            out["config"] = self.config
        return out


@dataclass(frozen=True, slots=True)
class RateCard:
    type: RateCardType
    key: str
    name: str
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    feature_key: str | None = None
    entitlement_template: EntitlementTemplate | None = None
    tax_config: TaxConfig | None = None
    billing_cadence: Duration | None = None
    price: Price | None = None
    discounts: Discounts = NO_DISCOUNTS

    @property
    def usage_period(self) -> Duration | None:
        """The metered entitlement's usage period: the template's, else the billing cadence."""
        template = self.entitlement_template
        if template is None or template.type is not TemplateType.METERED:
            return None
        return template.usage_period or self.billing_cadence

    @property
    def is_billable(self) -> bool:
        return self.price is not None

    def rest(self, resolve_defaults: bool = True) -> dict[str, Any]:
        """OpenMeter's JSON; `resolve_defaults=False` keeps a template's usage period unset (as stored)."""
        out: dict[str, Any] = {
            "type": self.type.value,
            "key": self.key,
            "name": self.name,
            "billingCadence": self.billing_cadence.iso() if self.billing_cadence is not None else None,
            "price": self.price.rest() if self.price is not None else None,
        }
        if self.description is not None:
            out["description"] = self.description
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.feature_key is not None:
            out["featureKey"] = self.feature_key
        if self.entitlement_template is not None:
            out["entitlementTemplate"] = self.entitlement_template.rest(
                self.billing_cadence if resolve_defaults else None
            )
        if self.tax_config is not None:
            out["taxConfig"] = self.tax_config.rest()
        if not self.discounts.is_empty():
            out["discounts"] = self.discounts.rest()
        return out


def parse_duration(r: Reader, data: Obj, name: str, path: str, required: bool = False) -> Duration | None:
    text = r.string(data, name, path, required=required)
    if text is None:
        return None
    try:
        return Duration.parse(text)
    except DurationError as exc:
        r.issues.error(join(path, name), str(exc), "invalid_duration")
        return None


def parse_tax_config(r: Reader, data: Any, path: str) -> TaxConfig | None:
    """A TaxConfig object, or None when absent (also read by invoice lines)."""
    return _tax_config(r, data, path)


def _tax_config(r: Reader, data: Any, path: str) -> TaxConfig | None:
    obj = r.obj(data, path, required=False)
    if obj is None:
        return None
    behavior = r.choice(obj, "behavior", path, tuple(b.value for b in TaxBehavior))
    stripe_code = None
    stripe = r.obj(obj.get("stripe"), join(path, "stripe"), required=False)
    if stripe is not None:
        stripe_code = r.string(stripe, "code", join(path, "stripe"), required=True)
        rest = (stripe_code or "").removeprefix(STRIPE_TAX_CODE_PREFIX)
        if stripe_code is not None and (
            not stripe_code.startswith(STRIPE_TAX_CODE_PREFIX) or len(rest) != 8 or not rest.isdigit()
        ):
            r.issues.error(join(path, "stripe.code"), "must match ^txcd_\\d{8}$", "invalid_tax_code")
    custom_code = None
    custom = r.obj(obj.get("customInvoicing"), join(path, "customInvoicing"), required=False)
    if custom is not None:
        custom_code = r.string(custom, "code", join(path, "customInvoicing"), required=True)
    tax_code_id = r.string(obj, "taxCodeId", path)
    if tax_code_id is not None and not ULID_RE.match(tax_code_id):
        r.issues.error(join(path, "taxCodeId"), "must be a ULID", "invalid_id")
    return TaxConfig(TaxBehavior(behavior) if behavior else None, stripe_code, custom_code, tax_code_id)


def _template(r: Reader, data: Any, path: str) -> EntitlementTemplate | None:
    obj = r.obj(data, path, required=False)
    if obj is None:
        return None
    kind = r.choice(obj, "type", path, tuple(t.value for t in TemplateType), required=True)
    metadata = r.metadata(obj, path)
    if kind is None:
        return None
    match TemplateType(kind):
        case TemplateType.METERED:
            issue = obj.get("issueAfterReset")
            issue_value: float | None = None
            if issue is not None:
                if isinstance(issue, bool) or not isinstance(issue, int | float) or issue < 0:
                    r.issues.error(join(path, "issueAfterReset"), "must be a number >= 0", "invalid_number")
                else:
                    issue_value = float(issue)
            priority = obj.get("issueAfterResetPriority", 1)
            if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 255:
                r.issues.error(
                    join(path, "issueAfterResetPriority"),
                    "must be an integer from 1 to 255",
                    "entitlement_template_invalid_issue_after_reset_with_priority",
                )
                priority = 1
            usage_period = parse_duration(r, obj, "usagePeriod", path)
            if usage_period is not None and not usage_period.at_least(ONE_HOUR):
                r.issues.error(
                    join(path, "usagePeriod"),
                    "must be at least one hour",
                    "entitlement_template_usage_period_less_then_an_hour",
                )
            elif usage_period is not None and not usage_period.whole_minutes:
                r.issues.error(join(path, "usagePeriod"), _WHOLE_MINUTES, "not_whole_minutes")
            return EntitlementTemplate(
                TemplateType.METERED,
                metadata,
                is_soft_limit=r.boolean(obj, "isSoftLimit", path, False),
                issue_after_reset=issue_value,
                issue_after_reset_priority=priority,
                preserve_overage_at_reset=r.boolean(obj, "preserveOverageAtReset", path, False),
                usage_period=usage_period,
            )
        case TemplateType.STATIC:
            config = r.string(obj, "config", path, required=True)
            if config is not None:
                try:
                    parsed = json.loads(config)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    r.issues.error(
                        join(path, "config"),
                        "must be the JSON text of an object",
                        "entitlement_template_invalid_json_config",
                    )
            return EntitlementTemplate(TemplateType.STATIC, metadata, config=config)
        case TemplateType.BOOLEAN:
            return EntitlementTemplate(TemplateType.BOOLEAN, metadata)
    return None  # pragma: no cover


def parse_rate_card(r: Reader, data: Any, path: str) -> RateCard | None:
    obj = r.obj(data, path)
    if obj is None:
        return None
    kind = r.choice(obj, "type", path, tuple(t.value for t in RateCardType), required=True)
    key = r.key(obj, "key", path)
    name = r.name(obj, path)
    description = r.description(obj, path)
    metadata = r.metadata(obj, path)
    feature_key = r.key(obj, "featureKey", path, required=False)
    template = _template(r, obj.get("entitlementTemplate"), join(path, "entitlementTemplate"))
    tax = _tax_config(r, obj.get("taxConfig"), join(path, "taxConfig"))
    cadence = parse_duration(r, obj, "billingCadence", path, required=kind == RateCardType.USAGE_BASED)
    if cadence is not None and not cadence.at_least(ONE_HOUR):
        r.issues.error(join(path, "billingCadence"), "must be at least one hour", "billing_cadence_invalid_value")
    elif cadence is not None and not cadence.whole_minutes:
        # It is the usage period of the rate card's metered entitlement when the template gives none.
        r.issues.error(join(path, "billingCadence"), _WHOLE_MINUTES, "not_whole_minutes")
    price = None
    if obj.get("price") is not None:
        price = parse_price(r, obj.get("price"), join(path, "price"), allow_usage=kind != RateCardType.FLAT_FEE)
    discounts = parse_discounts(r, obj.get("discounts"), join(path, "discounts"), price)
    if key is not None and feature_key is not None and key != feature_key:
        r.issues.error(join(path, "key"), "must equal featureKey", "rate_card_key_feature_key_mismatch")
    if template is not None and feature_key is None:
        r.issues.error(
            join(path, "entitlementTemplate"),
            "an entitlement template needs a featureKey",
            "entitlement_template_with_no_feature",
        )
    if price is not None and not isinstance(price, FlatPrice) and feature_key is None:
        r.issues.error(
            join(path, "featureKey"),
            "a usage-based price needs a featureKey",
            "usage_based_price_with_no_feature",
        )
    if (
        template is not None
        and template.type is TemplateType.METERED
        and template.usage_period is None
        and cadence is None
    ):
        r.issues.error(
            join(path, "entitlementTemplate.usagePeriod"),
            "required when the rate card has no billing cadence",
            "required",
        )
    if kind is None or key is None or name is None:
        return None
    return RateCard(
        RateCardType(kind), key, name, description, metadata, feature_key, template, tax, cadence, price, discounts
    )


@dataclass(frozen=True, slots=True)
class FeatureFacts:
    """What the catalog needs to know about a feature a rate card names."""

    key: str
    archived: bool
    has_meter: bool


def check_rate_card_features(
    r: Reader, card: RateCard, path: str, features: Mapping[str, FeatureFacts], strict: bool
) -> None:
    """The rate card's feature exists and is live (errors); a usage price and a metered template
    need a metered feature, and a metered template its `issueAfterReset` (OpenMeter's
    RateCardMeta.Validate; template problems are warnings unless `strict`, as at publish)."""
    template = card.entitlement_template
    if template is not None and template.type is TemplateType.METERED and template.issue_after_reset is None:
        message = "a metered entitlement template needs issueAfterReset"
        code = "entitlement_template_issue_after_reset_required"
        r.issues.warning_or_error(strict)(join(path, "entitlementTemplate.issueAfterReset"), message, code)
    if card.feature_key is None:
        return
    facts = features.get(card.feature_key)
    where = join(path, "featureKey")
    if facts is None:
        r.issues.error(where, f"feature {card.feature_key!r} not found", "rate_card_feature_not_found")
        return
    if facts.archived:
        r.issues.error(where, f"feature {card.feature_key!r} is archived", "rate_card_feature_archived")
    if card.price is not None and not isinstance(card.price, FlatPrice) and not facts.has_meter:
        r.issues.error(
            where,
            "a usage-based price needs a feature with a meter",
            "usage_based_price_with_feature_and_no_meter",
        )
    if template is not None and template.type is TemplateType.METERED and not facts.has_meter:
        message = "a metered entitlement template needs a feature with a meter"
        code = "rate_card_entitlement_template_type_mismatch"
        where = join(path, "entitlementTemplate.type")
        r.issues.warning_or_error(strict)(where, message, code)


def check_rate_card_keys(r: Reader, cards: list[RateCard | None], path: str) -> None:
    seen: set[str] = set()
    for index, card in enumerate(cards):
        if card is None:
            continue
        if card.key in seen:
            r.issues.error(f"{path}[{index}].key", f"duplicate rate card key {card.key!r}", "rate_card_duplicated_key")
        seen.add(card.key)
