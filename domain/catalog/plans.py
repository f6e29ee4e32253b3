"""Plans: versioned templates for subscriptions (OpenMeter's `Plan`, `PlanPhase`).

A plan has a `key` shared by all its versions and a `version` (1, 2, ...). Its `status` is derived
from `effective_from` / `effective_to` against "now" (`plan_status`): draft (not published),
scheduled (published for later), active, archived. Phases run in order; every phase but the last
has a `duration`, the last is open-ended. Each phase has rate cards (ratecards.py).

`parse_plan(data)` reads OpenMeter's PlanCreate / PlanReplaceUpdate JSON into a
`PlanInput` and an `Issues` of field-path problems; `check_plan(input, features, strict)` adds the
plan-wide rules. With `strict=False` (create, update of a draft) the rules OpenMeter treats as
warnings (cadence alignment, phase shape, templates that do not fit their feature) are recorded as
the plan's `validationErrors`; publish runs the same checks with `strict=True` and refuses the plan
on any of them (400, e.g. `rate_card_billing_cadence_unaligned`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.catalog import currencies
from domain.catalog.durations import Duration
from domain.catalog.ratecards import (
    ONE_HOUR,
    FeatureFacts,
    RateCard,
    check_rate_card_features,
    check_rate_card_keys,
    parse_duration,
    parse_rate_card,
)
from domain.catalog.versions import CatalogVersion, read_common_fields
from domain.catalog.wire import Issues, Obj, Reader, join


class PlanStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"
    SCHEDULED = "scheduled"


class SettlementMode(enum.StrEnum):
    CREDIT_THEN_INVOICE = "credit_then_invoice"
    CREDIT_ONLY = "credit_only"


def plan_status(effective_from: datetime | None, effective_to: datetime | None, now: datetime) -> PlanStatus:
    if effective_from is None:
        return PlanStatus.DRAFT
    if effective_to is not None and effective_to <= now:
        return PlanStatus.ARCHIVED
    if now < effective_from:
        return PlanStatus.SCHEDULED
    return PlanStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class ProRatingConfig:
    enabled: bool = True
    mode: str = "prorate_prices"

    def rest(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "mode": self.mode}


@dataclass(frozen=True, slots=True)
class PlanPhase:
    key: str
    name: str
    rate_cards: tuple[RateCard, ...]
    duration: Duration | None = None
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def rest(self, resolve_defaults: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "name": self.name,
            "duration": self.duration.iso() if self.duration is not None else None,
            "rateCards": [card.rest(resolve_defaults) for card in self.rate_cards],
        }
        if self.description is not None:
            out["description"] = self.description
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True, slots=True)
class PlanInput:
    """A plan's editable content (create, and update of a draft: `key` is then the stored one)."""

    key: str
    name: str
    currency: str
    billing_cadence: Duration
    phases: tuple[PlanPhase, ...]
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    pro_rating: ProRatingConfig = ProRatingConfig()
    settlement_mode: SettlementMode = SettlementMode.CREDIT_THEN_INVOICE
    billables_must_align: bool = True

    def feature_keys(self) -> set[str]:
        return {c.feature_key for p in self.phases for c in p.rate_cards if c.feature_key is not None}

    def document(self, resolve_defaults: bool = False) -> dict[str, Any]:
        """The PlanCreate JSON of this content; `parse_plan(document())` gives it back (storage)."""
        out: dict[str, Any] = {
            "key": self.key,
            "name": self.name,
            "currency": self.currency,
            "billingCadence": self.billing_cadence.iso(),
            "proRatingConfig": self.pro_rating.rest(),
            "settlementMode": self.settlement_mode.value,
            "alignment": {"billablesMustAlign": self.billables_must_align},
            "phases": [p.rest(resolve_defaults) for p in self.phases],
        }
        if self.description is not None:
            out["description"] = self.description
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True, slots=True)
class Plan(CatalogVersion[PlanInput]):
    def status(self, now: datetime) -> PlanStatus:
        return plan_status(self.effective_from, self.effective_to, now)


def parse_currency(r: Reader, data: Obj, path: str) -> str:
    code = r.string(data, "currency", path)
    if code is None:
        return currencies.DEFAULT_CURRENCY
    if currencies.lookup(code) is None:
        r.issues.error(join(path, "currency"), f"{code!r} is not an ISO 4217 currency code", "currency_invalid")
    return code


def _phase(r: Reader, data: Any, path: str) -> PlanPhase | None:
    obj = r.obj(data, path)
    if obj is None:
        return None
    key = r.key(obj, "key", path)
    name = r.name(obj, path)
    description = r.description(obj, path)
    metadata = r.metadata(obj, path)
    duration = parse_duration(r, obj, "duration", path)
    if duration is not None and not duration.at_least(ONE_HOUR):
        r.issues.error(join(path, "duration"), "must be at least one hour", "plan_phase_duration_less_then_an_hour")
    cards: list[RateCard | None] = []
    cards_path = join(path, "rateCards")
    for index, raw in enumerate(r.list(obj, "rateCards", path, required=True)):
        cards.append(parse_rate_card(r, raw, f"{cards_path}[{index}]"))
    check_rate_card_keys(r, cards, cards_path)
    if key is None or name is None:
        return None
    return PlanPhase(key, name, tuple(c for c in cards if c is not None), duration, description, metadata)


def parse_plan(data: Any, existing: PlanInput | None = None) -> tuple[PlanInput | None, Issues]:
    """Reads a PlanCreate body, or a PlanReplaceUpdate of `existing` (whose key and currency stay,
    and whose description, metadata and settlement mode stay when the body leaves them out, as
    OpenMeter's update sets them only when given); the input is None when it has errors."""
    r = Reader()
    obj = r.obj(data, "")
    if obj is None:
        return None, r.issues
    key, name, description, metadata = read_common_fields(r, obj, existing)
    currency = parse_currency(r, obj, "") if existing is None else existing.currency
    cadence = parse_duration(r, obj, "billingCadence", "", required=True)
    if cadence is not None and not cadence.at_least(ONE_HOUR):
        r.issues.error("billingCadence", "must be at least one hour", "plan_billing_cadence_invalid")
    elif cadence is not None and not cadence.whole_minutes:
        r.issues.error(
            "billingCadence", "must be a whole number of minutes (no seconds part)", "plan_billing_cadence_invalid"
        )
    pro_rating = ProRatingConfig()
    raw_pro = r.obj(obj.get("proRatingConfig"), "proRatingConfig", required=False)
    if raw_pro is not None:
        mode = r.choice(raw_pro, "mode", "proRatingConfig", ("prorate_prices",))
        pro_rating = ProRatingConfig(r.boolean(raw_pro, "enabled", "proRatingConfig", True), mode or "prorate_prices")
    settlement = r.choice(obj, "settlementMode", "", tuple(m.value for m in SettlementMode))
    if settlement is None and existing is not None and obj.get("settlementMode") is None:
        settlement = existing.settlement_mode.value
    align = True
    raw_align = r.obj(obj.get("alignment"), "alignment", required=False)
    if raw_align is not None:
        align = r.boolean(raw_align, "billablesMustAlign", "alignment", True)
    phases: list[PlanPhase | None] = []
    raw_phases = r.list(obj, "phases", "", required=True)
    if "phases" in obj and not raw_phases:
        r.issues.error("phases", "a plan needs at least one phase", "plan_with_no_phases")
    for index, raw in enumerate(raw_phases):
        phases.append(_phase(r, raw, f"phases[{index}]"))
    seen: set[str] = set()
    for index, phase in enumerate(phases):
        if phase is None:
            continue
        if phase.key in seen:
            r.issues.error(f"phases[{index}].key", f"duplicate phase key {phase.key!r}", "plan_phase_duplicated_key")
        seen.add(phase.key)
    if r.issues.errors or key is None or name is None or cadence is None:
        return None, r.issues
    return (
        PlanInput(
            key=key,
            name=name,
            currency=currency,
            billing_cadence=cadence,
            phases=tuple(p for p in phases if p is not None),
            description=description,
            metadata=metadata,
            pro_rating=pro_rating,
            settlement_mode=SettlementMode(settlement) if settlement else SettlementMode.CREDIT_THEN_INVOICE,
            billables_must_align=align,
        ),
        r.issues,
    )


def check_plan(plan: PlanInput, features: Mapping[str, FeatureFacts], strict: bool, issues: Issues) -> None:
    """Plan-wide rules. Non-strict: OpenMeter's warnings go to `issues.warnings`; strict: errors."""
    r = Reader(issues)

    problem = issues.warning_or_error(strict)

    last = len(plan.phases) - 1
    for p_index, phase in enumerate(plan.phases):
        p_path = f"phases[{p_index}]"
        if p_index != last and phase.duration is None:
            problem(
                join(p_path, "duration"),
                "only the last phase may be open-ended",
                "plan_has_non_last_phase_with_no_duration",
            )
        if p_index == last and phase.duration is not None:
            problem(
                join(p_path, "duration"),
                "the last phase must be open-ended (no duration)",
                "plan_has_last_phase_with_duration",
            )
        if not phase.rate_cards:
            problem(join(p_path, "rateCards"), "a phase needs at least one rate card", "plan_phase_has_no_rate_cards")
        for c_index, card in enumerate(phase.rate_cards):
            c_path = f"{p_path}.rateCards[{c_index}]"
            if (
                card.is_billable
                and card.billing_cadence is not None
                and not card.billing_cadence.aligned_with(plan.billing_cadence)
            ):
                problem(
                    join(c_path, "billingCadence"),
                    f"billing cadence {card.billing_cadence.iso()} does not align with the plan's "
                    f"{plan.billing_cadence.iso()} (one must be a whole multiple of the other)",
                    "rate_card_billing_cadence_unaligned",
                )
            check_rate_card_features(r, card, c_path, features, strict)
