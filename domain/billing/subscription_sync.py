"""Subscriptions -> pending lines on the customer's gathering invoice.

Billing depends on subscriptions, not the other way round: the subscription service only tells its
listeners that a subscription changed, and this module turns its billable items
(`subscriptions.timeline.billable_items`, a pure function of the subscription and "now") into
lines. Each billable item is one line keyed by the item's key (`InvoiceLine.sync_key`, unique among
live lines with the period start, so two syncs racing cannot both create it); `subscriptions.sync
.plan_sync` compares what should exist with what is held and says what to create, update and
delete. One subscription is synced in one transaction (the gathering invoice row locked), so a
crash leaves the old lines or the new ones, and a re-run after an edit or a crash finds the same
keys: nothing is billed twice, nothing dropped.

- In-advance flat fees are due at their billing period's start, in-arrears fees and usage at its
  end (`BillableItem.invoice_at`); a flat fee for part of a period is prorated when the
  subscription prorates (`rating.rate`, the engine that rates invoices), and a zero amount is no line.
- A usage line's period key is its item key: progressive billing and late-usage corrections bill
  the difference from what earlier invoices of that key billed. Its usage is read over the item's
  own service period (an item version that starts mid-period bills only its own usage).
- Lines on a draft invoice (one the transition table still lets be updated: not sent to anyone)
  follow the subscription as gathering lines do, and the draft is rated again, as OpenMeter patches
  mutable standard invoices: a flat fee takes the item's period and amount, a usage part is trimmed
  or removed (never extended: an end moved later extends the latest gathering part). Lines on an
  invoice past draft are not ours to change. An edit that shortens or removes an item whose period
  was partly invoiced (progressive billing) trims or removes the parts still open; what was issued
  stays (taking money back needs credit notes, which Tally does not have yet).
- So a prorated flat fee's later version (the item split mid-period after its period's in-advance
  fee was issued: an add-on bought, changed or taken off) bills net of what the issued lines of
  its item charged for its time (`_net_of_issued`), floored at 0 (docs/billing.md); after a plan
  change, also of a share of what the replaced subscriptions' recurring flat fees charged
  (`_successor_shares`). A fee
  issued net of a line whose invoice was voided since bills what the void took back from its
  netting as a balance line (`_balances`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Protocol

from ulid import ULID

from domain.billing.invoice_service import closes_its_period, gathering_schedule, new_gathering
from domain.billing.invoice_states import InvoiceStatus
from domain.billing.invoices import (
    BALANCE_OF,
    Invoice,
    InvoiceLine,
    LineStatus,
    LineType,
    ManagedBy,
    SubscriptionRef,
    put_back_by_a_void,
)
from domain.billing.models import ProrationMode
from domain.billing.ports import BillingStore, UnitOfWork
from domain.billing.service import BillingProfileService
from domain.catalog import currencies
from domain.catalog.prices import FlatPrice
from domain.catalog.ratecards import RateCard
from domain.catalog.rating import (
    EXACT,
    Period,
    RatingInput,
    charged_for,
    flat_amount_charging,
    flat_fee_per_unit,
    flat_per_unit,
    rate_flat_units,
)
from domain.entitlements.recurrence import Period as TimelinePeriod
from domain.errors import again_on_conflict
from domain.records import evolve
from domain.subscriptions.catalog import billing_terms
from domain.subscriptions.models import PREVIOUS_ANNOTATION, SUPERSEDING_ANNOTATION, Subscription, replaced_chain
from domain.subscriptions.sync import HeldLine, SyncPlan, plan_sync
from domain.subscriptions.timeline import (
    BillableItem,
    all_items,
    billable_items,
    item_of,
    rate_card_key_of,
    whole_second,
)
from domain.wiretime import rfc3339

Clock = Callable[[], datetime]

# Subscriptions whose lines a sync pass reads in one statement to find those out of sync.
_CHECK_CHUNK = 500


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DraftEditor(Protocol):
    """Edits of standard invoices not sent yet (the invoice service provides them)."""

    async def edit_subscription_lines(
        self,
        tx: BillingStore,
        namespace: str,
        invoice_id: str,
        updated: Sequence[InvoiceLine],
        removed: Sequence[str],
        now: datetime,
    ) -> bool: ...

    async def settle_edited(self, namespace: str, invoice_id: str) -> None: ...


class SubscriptionFeed(Protocol):
    """Subscriptions as stored (the subscription repository provides them)."""

    async def list_billable(self, ended_after: datetime) -> list[Subscription]:
        """The subscriptions a sync pass covers: those in force or ended lately, and those deleted
        lately (SubscriptionRepository.list_billable)."""
        ...

    async def list_for_customers(self, namespace: str, customer_ids: Sequence[str]) -> list[Subscription]:
        """These customers' subscriptions, deleted ones too: where plan changes' chains are found."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class _Expected:
    item: BillableItem
    line: InvoiceLine  # invoice_id and id are filled in when it is created
    # A flat fee prorated by time: billed net of what issued lines of its item charged for its time.
    prorated: bool = False
    # The fee's line prorated, for a fee the subscription's end bills whole (bill_full_period)
    # that is otherwise prorated: its lines issued before the end was known were netted as that.
    prorated_line: InvoiceLine | None = None

    def as_netted_before_the_end(self) -> _Expected:
        """The fee as its lines issued before the subscription's end was known were netted: prorated."""
        if self.prorated_line is None:
            return self
        return _Expected(self.item, self.prorated_line, prorated=True)

    def issued_until(self, end: datetime) -> _Expected:
        """The fee over its time up to `end`, prorated: as its own line issued before an end cut
        its time short was billed (and netted), over the time it covers."""
        line, card = self.line, self.item.rate_card
        assert isinstance(card, RateCard) and isinstance(card.price, FlatPrice) and line.quantity is not None
        price = card.price
        service = Period(line.period_start, end)
        full = Period(self.item.full_period.start, self.item.full_period.end)
        rating = RatingInput(price, currencies.get(line.currency), service, full, prorate=True)
        longer = evolve(line, period_end=end, per_unit_amount=flat_fee_per_unit(rating, line.quantity))
        return _Expected(self.item, longer, prorated=True)


class SubscriptionSync:
    def __init__(
        self,
        uow: UnitOfWork,
        profiles: BillingProfileService,
        subscriptions: SubscriptionFeed,
        clock: Clock = _utcnow,
        # A pass also covers subscriptions that ended this recently (their last lines).
        ended_within: timedelta = timedelta(days=31),
        # Lines on draft invoices follow the subscription too when given (OpenMeter's).
        drafts: DraftEditor | None = None,
    ) -> None:
        self._uow = uow
        self._profiles = profiles
        self._subscriptions = subscriptions
        self._clock = clock
        self._ended_within = ended_within
        self._drafts = drafts

    async def sync_all(self, concurrency: int = 8) -> int:
        """Syncs every live subscription whose lines differ from its billable items, `concurrency`
        at a time (each in its own transaction); returns how many lines were created, changed or
        removed."""
        now = self._clock()
        live = await self._subscriptions.list_billable(now - self._ended_within)
        pending = list(reversed(await self._out_of_sync(live, now)))
        changed = 0
        errors: list[Exception] = []

        async def run() -> None:
            nonlocal changed
            while pending:
                try:
                    # Awaited before adding: `changed += await ...` reads `changed` before the
                    # await, and the runners' counts overwrote each other.
                    lines = await self.sync(pending.pop())
                    changed += lines
                except Exception as exc:
                    # One subscription's failure does not hold back the others; it is raised below.
                    errors.append(exc)

        await asyncio.gather(*(run() for _ in range(concurrency)))
        if errors:
            raise errors[0]
        return changed

    async def _out_of_sync(self, subscriptions: Sequence[Subscription], now: datetime) -> list[Subscription]:
        """The subscriptions whose lines differ from their billable items now, read a chunk at a
        time without locks. On most passes almost none do (subscription writes sync at once), and
        a transaction per subscription only to find that out cost a pass three times as long
        (tests.bench.billing's `sync_again_s`). What this read finds in sync but another writer changes after it, that
        writer's own sync handles; each one found out of sync is planned again under its lock."""
        out: list[Subscription] = []
        by_namespace: dict[str, list[Subscription]] = {}
        for subscription in subscriptions:
            by_namespace.setdefault(subscription.namespace, []).append(subscription)
        for namespace, members in by_namespace.items():
            for start in range(0, len(members), _CHECK_CHUNK):
                chunk = members[start : start + _CHECK_CHUNK]
                chains, whole = await self._replaced(namespace, chunk)
                ids = list(dict.fromkeys([s.id for s in chunk] + [x.id for c in chains.values() for x in c]))
                async with self._uow() as tx:
                    held = await tx.invoices.subscription_lines(namespace, ids)
                for subscription in chunk:
                    try:
                        _, _, plan, edits = _planned(
                            subscription,
                            await self._expected(subscription, now),
                            held,
                            chains[subscription.id],
                            subscription.customer_id not in whole,
                            self._editable(),
                            now,
                        )
                    except Exception:
                        # Synced on its own, where its failure is reported without holding back
                        # the other subscriptions.
                        out.append(subscription)
                        continue
                    if not plan.empty or not edits.empty:
                        out.append(subscription)
        return out

    async def bill_again(self, namespace: str, customer_id: str, subscription_ids: Collection[str]) -> None:
        """Syncs the customer's subscriptions `subscription_ids` now, whether live or ended long
        ago: a void put lines of theirs back to be billed again (InvoiceService.bill_again), and
        the sync makes those items' lines again."""
        for subscription in await self._subscriptions.list_for_customers(namespace, [customer_id]):
            if subscription.id in subscription_ids:
                await self.sync(subscription)

    async def sync(self, subscription: Subscription) -> int:
        """Brings the subscription's lines in line with its billable items now; returns how many
        lines were created, changed or removed (0 when they already match)."""
        now = self._clock()
        expected = await self._expected(subscription, now)
        chains, whole = await self._replaced(subscription.namespace, [subscription])
        chain, netted = chains[subscription.id], subscription.customer_id not in whole
        # Another sync may make the gathering invoice or a line first: then plan again against it.
        return await again_on_conflict(lambda: self._apply(subscription, expected, chain, netted, now))

    async def _replaced(
        self, namespace: str, subscriptions: Sequence[Subscription]
    ) -> tuple[dict[str, list[Subscription]], set[str]]:
        """Each subscription's chain of those plan changes replaced on the way to it, latest first,
        whose issued fees it is billed net of: one read for their customers (none when no plan
        change made any of them: a pass over subscriptions all migrated to a new plan version reads
        once per chunk, not once each); and those of the customers with a chain whose workflow
        bills the period a subscription ends in whole (bill_full_period): the replaced plan's fee
        for the period it ended in is owed whole, issued or not (not yet issued, its line is billed
        whole too), so it is no credit for the new plan's time. Their chains still say what a void
        took back from a fee netted before the workflow changed (`_balances`)."""
        changed = [s for s in subscriptions if PREVIOUS_ANNOTATION in s.annotations]
        found: dict[str, list[Subscription]] = {}
        if changed:
            customers = sorted({s.customer_id for s in changed})
            for other in await self._subscriptions.list_for_customers(namespace, customers):
                found.setdefault(other.customer_id, []).append(other)
        chains = {s.id: replaced_chain(s, found.get(s.customer_id, [])) for s in subscriptions}
        with_chain = sorted({s.customer_id for s in subscriptions if chains[s.id]})
        whole = await self._bill_full_period_at_end(namespace, with_chain) if with_chain else set()
        return chains, whole

    async def _bill_full_period_at_end(self, namespace: str, customer_ids: Sequence[str]) -> set[str]:
        """Those of the customers whose workflow's subscriptionEndProrationMode is
        bill_full_period; the namespace default's once a customer is deleted (its ended
        subscriptions stay in the passes for a while, and a pass must not fail on them)."""
        effective = await self._profiles.effective_profiles(namespace, customer_ids)
        fallback: ProrationMode | None = None
        out: set[str] = set()
        for customer_id in customer_ids:
            found = effective.get(customer_id)
            if found is not None:
                mode = found.workflow.subscription_end_proration_mode
            else:
                if fallback is None:
                    fallback = (await self._profiles.get_default(namespace)).workflow.subscription_end_proration_mode
                mode = fallback
            if mode is ProrationMode.BILL_FULL_PERIOD:
                out.add(customer_id)
        return out

    async def _expected(self, subscription: Subscription, now: datetime) -> dict[str, _Expected]:
        if subscription.deleted_at is not None:
            return {}
        phase_ids = {p.key: p.id for p in subscription.spec.phases}
        items = billable_items(subscription.id, subscription.spec, now, billing_terms)
        # The billing workflow's subscriptionEndProrationMode decides how a flat fee whose period
        # the subscription's end cuts short is billed; read only when one is (cancellations).
        full_period_at_end = False
        if any(_prorated_at_end(subscription, item) for item in items):
            whole = await self._bill_full_period_at_end(subscription.namespace, [subscription.customer_id])
            full_period_at_end = subscription.customer_id in whole
        out: dict[str, _Expected] = {}
        for item in items:
            phase_id = phase_ids.get(item.phase_key, item.phase_key)
            line = _line(subscription, item, phase_id, now, full_period_at_end=full_period_at_end)
            if line is not None:
                prorated = line.type is LineType.FLAT_FEE and _prorates(subscription, item, full_period_at_end)
                before_the_end = None
                if line.type is LineType.FLAT_FEE and not prorated and _prorates(subscription, item, False):
                    before_the_end = _line(subscription, item, phase_id, now)
                out[item.key] = _Expected(item, line, prorated, before_the_end)
        return out

    def _editable(self) -> set[InvoiceStatus]:
        """The statuses of the invoices whose lines follow the subscription."""
        return {InvoiceStatus.GATHERING} | ({InvoiceStatus.DRAFT} if self._drafts is not None else set())

    async def _apply(
        self,
        subscription: Subscription,
        expected: dict[str, _Expected],
        chain: list[Subscription],
        netted: bool,
        now: datetime,
    ) -> int:
        """`netted`: the subscription's fees are billed net of its chain's (not under bill_full_period)."""
        ns = subscription.namespace
        async with self._uow() as tx:
            if self._drafts is not None:
                # Drafts holding the subscription's lines are locked before the gathering invoice,
                # in the order deleting a draft takes them (the draft, then the gathering invoice
                # its lines go back to): the other order could deadlock with such a delete.
                before = await tx.invoices.subscription_lines(ns, [subscription.id])
                for draft_id in sorted(
                    {x.invoice_id for x, st in before[subscription.id] if st is InvoiceStatus.DRAFT}
                ):
                    await tx.invoices.get(ns, draft_id, lock=True)
            gathering = await tx.invoices.get_gathering(ns, subscription.customer_id, subscription.currency, lock=True)
            held = await tx.invoices.subscription_lines(ns, [subscription.id, *(x.id for x in chain)])
            editable = self._editable()
            # Netted here, against the lines read under the lock: what is issued no longer changes.
            expected, parts, plan, edits = _planned(subscription, expected, held, chain, netted, editable, now)
            if plan.empty and edits.empty:
                return 0
            changed_on_drafts = 0
            made_here = gathering is None and bool(plan.create or edits.create)
            if made_here:
                effective = await self._profiles.effective_profile(ns, subscription.customer_id, with_customer=True)
                assert effective.customer is not None
                gathering = new_gathering(ns, effective.customer, effective, subscription.currency, now)
                await tx.invoices.insert(gathering)
            created = [
                evolve(line, id=str(ULID()), invoice_id=gathering.id)
                for line in [*(expected[item.key].line for item in plan.create), *edits.create]
                if gathering is not None
            ]
            updated: list[InvoiceLine] = list(edits.update)
            removed: list[str] = list(edits.delete)
            # Parts on standard invoices not sent yet, by invoice: edited like gathering ones, then
            # the invoice is rated again (a draft billing a month the cancellation cut to ten days
            # must not go out billing the month).
            draft_updated: dict[str, list[InvoiceLine]] = {}
            draft_removed: dict[str, list[str]] = {}
            for item in plan.update:
                # Nothing of it invoiced yet: one line follows the item, any other part goes.
                first, *others = sorted((line for line, _ in parts[item.key]), key=lambda x: x.period_start)
                updated.append(_refresh(first, expected[item.key].line, now))
                removed.extend(line.id for line in others)
            for key in plan.delete:
                removed.extend(line.id for line, _ in parts[key] if line.deleted_at is None)
            for key in plan.corrections:
                # Partly invoiced: only the parts still gathering follow the edit. A new end cuts
                # the part it falls in and drops those after it; an end later than every part's
                # extends the latest gathering part to it (whatever lies between is billed once:
                # the snapshot takes each part after the earlier ones). No part is stretched over
                # another's days otherwise.
                want = expected.get(key)
                open_parts = [(line, status) for line, status in parts[key] if status in editable]
                stretched = _stretched_part(parts[key], want)
                for line, status in open_parts:
                    on_draft = status is not InvoiceStatus.GATHERING
                    if want is None or want.item.service_period.end <= line.period_start:
                        if on_draft:
                            draft_removed.setdefault(line.invoice_id, []).append(line.id)
                        else:
                            removed.append(line.id)
                    elif line.type is LineType.FLAT_FEE and on_draft:
                        # A flat fee is one line: its period and amount become the item's.
                        if _billed(line) != _billed(want.line):
                            draft_updated.setdefault(line.invoice_id, []).append(_refresh(line, want.line, now))
                    elif (
                        line.period_end > want.item.service_period.end
                        or line is stretched
                        # A usage part the new end meets exactly is the period's last part now:
                        # its period's end follows, so it is rated as the last (minimum spend).
                        or (
                            line.type is LineType.USAGE_BASED
                            and line.period_end == want.item.service_period.end
                            and line.full_period_end != line.period_end
                        )
                    ):
                        end = want.item.service_period.end
                        moved = evolve(
                            line,
                            period_end=end,
                            full_period_end=end if line.type is LineType.USAGE_BASED else line.full_period_end,
                            invoice_at=want.line.invoice_at,
                            updated_at=now,
                        )
                        if on_draft:
                            draft_updated.setdefault(line.invoice_id, []).append(moved)
                        else:
                            updated.append(moved)
            # Removed first: a line made or moved may take the period start of one that goes
            # (one line per sync key and start).
            if removed:
                await tx.invoices.delete_lines(ns, removed, now)
            if created:
                await tx.invoices.insert_lines(created)
            if updated:
                await tx.invoices.update_lines(updated)
            if gathering is not None:
                # A gathering invoice made in this transaction holds only the lines made with it:
                # no read of them (one statement of the ten a first sync takes per subscription).
                await _reschedule(tx, gathering, now, created if made_here else None)
            edited: list[str] = []
            for invoice_id in sorted(draft_updated.keys() | draft_removed.keys()):
                assert self._drafts is not None
                ups, gone = draft_updated.get(invoice_id, []), draft_removed.get(invoice_id, [])
                if await self._drafts.edit_subscription_lines(tx, ns, invoice_id, ups, gone, now):
                    edited.append(invoice_id)
                    changed_on_drafts += len(ups) + len(gone)
            await tx.commit()
        for invoice_id in edited:
            assert self._drafts is not None
            await self._drafts.settle_edited(ns, invoice_id)
        return len(created) + len(updated) + len(removed) + changed_on_drafts


def _plan(
    expected: dict[str, _Expected],
    held: Sequence[tuple[InvoiceLine, InvoiceStatus]],
    editable: set[InvoiceStatus],
) -> tuple[dict[str, list[tuple[InvoiceLine, InvoiceStatus]]], SyncPlan]:
    """The subscription's held lines by sync key, and what to create, update and delete. A
    correction of a key none of whose parts is on an `editable` invoice is left out: what was
    issued stays, and a pass must not find the subscription out of sync for it on every run."""
    parts: dict[str, list[tuple[InvoiceLine, InvoiceStatus]]] = {}
    for line, status in held:
        # Lines without a sync key (late-usage corrections) are the billing side's own.
        if line.sync_key is not None:
            parts.setdefault(line.sync_key, []).append((line, status))
    plan = plan_sync([e.item for e in expected.values()], {k: _held(k, v) for k, v in parts.items()})
    open_corrections = tuple(k for k in plan.corrections if any(status in editable for _, status in parts[k]))
    if open_corrections != plan.corrections:
        plan = evolve(plan, corrections=open_corrections)
    # The timeline compares periods only; a flat fee's amount can change on its own (the workflow's
    # subscriptionEndProrationMode changed, say). A line nothing of which is invoiced yet follows
    # it, as OpenMeter patches a line whose per-unit amount differs from the target's.
    # A fee already on a draft (editable, not gathering) is re-rated on its draft as a correction
    # of that invoice is (OpenMeter's invoice updater patches mutable standard invoices alike).
    planned = {i.key for i in (*plan.create, *plan.update)} | set(plan.delete) | set(plan.corrections)
    unplanned = [(key, e) for key, e in expected.items() if key not in planned and key in parts]
    repriced = tuple(e.item for key, e in unplanned if _repriced(e.line, parts[key], {InvoiceStatus.GATHERING}))
    on_drafts = tuple(
        key for key, e in unplanned if _repriced(e.line, parts[key], editable - {InvoiceStatus.GATHERING})
    )
    if repriced or on_drafts:
        plan = evolve(plan, update=(*plan.update, *repriced), corrections=(*plan.corrections, *on_drafts))
    # A line the user edited or deleted through the invoice API is managedBy manual: the sync
    # patches only the subscription's own lines (OpenMeter's subscriptionsync reconciler,
    # patchhelpers.go shouldSkipLinePatch) and, the deleted line still being held, does not make
    # it again. An item that goes still takes its live lines with it (patchinvoiceline.go AddDelete).
    users = {key for key, v in parts.items() if any(line.managed_by is ManagedBy.MANUAL for line, _ in v)}
    if users:
        plan = evolve(
            plan,
            update=tuple(i for i in plan.update if i.key not in users),
            corrections=tuple(k for k in plan.corrections if k not in users),
            delete=tuple(k for k in plan.delete if any(line.deleted_at is None for line, _ in parts[k])),
        )
    return parts, plan


def _repriced(
    wanted: InvoiceLine, held: Sequence[tuple[InvoiceLine, InvoiceStatus]], statuses: set[InvoiceStatus]
) -> bool:
    """Whether the held flat-fee lines, all on invoices of `statuses`, bill another amount than the
    item's line (a usage line's amount is its snapshot's business)."""
    if not statuses or wanted.type is not LineType.FLAT_FEE or any(status not in statuses for _, status in held):
        return False
    return any(line.per_unit_amount != wanted.per_unit_amount or line.quantity != wanted.quantity for line, _ in held)


def _billed(line: InvoiceLine) -> tuple[object, ...]:
    """What a flat-fee line bills: its period and amount."""
    return (line.period_start, line.period_end, line.per_unit_amount, line.quantity)


def _held(key: str, parts: Sequence[tuple[InvoiceLine, InvoiceStatus]]) -> HeldLine:
    lines = [line for line, _ in parts]
    gathering = [line for line, status in parts if status is InvoiceStatus.GATHERING]
    ref = lines[0].subscription
    # Compared at whole seconds, as items are billed: a line synced when periods kept their
    # microseconds is the same bill, and rewriting it (or, partly invoiced, planning a correction on
    # every pass) would change nothing anyone is charged.
    return HeldLine(
        key=key,
        service_period=TimelinePeriod(
            whole_second(min(x.period_start for x in lines)), whole_second(max(x.period_end for x in lines))
        ),
        invoice_at=whole_second((gathering or lines)[-1].invoice_at),
        item_id=ref.item_id if ref is not None else "",
        invoiced=len(gathering) < len(lines),
    )


def _prorated_at_end(subscription: Subscription, item: BillableItem) -> bool:
    """Whether the item is a prorated flat fee for less than its full period in the period the
    subscription ends in. That period is what bill_full_period bills whole, whatever shortened it:
    a subscription that started mid-period and ends at that period's boundary too (OpenMeter's
    shouldProrate: the subscription's end at or before the service period's end)."""
    end = subscription.spec.active_to
    if end is not None:
        # Billed periods end at whole seconds (billable_items): a cancellation at 10:00:00.5 ends
        # the last one at 10:00:00, which is the subscription's end for this purpose.
        end = whole_second(end)
    return (
        end is not None
        and subscription.pro_rating.enabled
        and not item.one_time
        and isinstance(item.rate_card, RateCard)
        and isinstance(item.rate_card.price, FlatPrice)
        and item.service_period.end >= end
        and item.service_period != item.full_period
    )


def _prorates(subscription: Subscription, item: BillableItem, full_period_at_end: bool) -> bool:
    """Whether the item's flat fee is prorated by time (not a one-time fee, not the period the
    subscription ends in billed whole under bill_full_period)."""
    if not subscription.pro_rating.enabled or item.one_time:
        return False
    return not (full_period_at_end and _prorated_at_end(subscription, item))


# Invoices whose lines never billed anyone: deleted ones.
_NOT_BILLED = frozenset({InvoiceStatus.DELETE, InvoiceStatus.DELETED})


def _fee_key(line: InvoiceLine) -> str | None:
    """The sync key of the subscription fee a line bills: its own, or, for a balance line, that of
    the fee it completes."""
    return line.sync_key if line.sync_key is not None else line.metadata.get(BALANCE_OF)


class _Voided(enum.Enum):
    """Which lines of voided invoices count as still charging what they did (`_balances` compares
    the netting each gives)."""

    NONE = "none"  # as things stand: a voided invoice charges nothing
    FORGIVEN = "forgiven"  # those a void forgave (discarded), not those it put back to be billed again
    ALL = "all"  # every one: what a fee was netted of before any void


def _charged(
    line: InvoiceLine, status: InvoiceStatus, editable: set[InvoiceStatus], *, voided: _Voided = _Voided.NONE
) -> bool:
    """A subscription flat fee (its line or a balance of it) on an invoice past editable that
    charged the customer for good (`voided`: or did, before its invoice was voided)."""
    if status is InvoiceStatus.VOIDED and not (
        voided is _Voided.ALL or (voided is _Voided.FORGIVEN and not put_back_by_a_void(line, status))
    ):
        return False
    return (
        _fee_key(line) is not None
        and line.type is LineType.FLAT_FEE
        and line.deleted_at is None
        and status not in editable
        and status not in _NOT_BILLED
    )


def _line_total(line: InvoiceLine) -> Decimal:
    """What a flat-fee line charges (its total before taxes): its amount less its rate card's
    percentage discount."""
    assert line.per_unit_amount is not None and line.quantity is not None
    amount, off = rate_flat_units(
        line.per_unit_amount, line.quantity, currencies.get(line.currency), line.rate_card_discounts
    )
    return amount - off


@dataclasses.dataclass(frozen=True, slots=True)
class _Share:
    """The part of what the plans a change replaced charged that one fee of the successor nets, as
    a slice [low, high) of the cumulative shares of its fees (`_pooled`): the whole of it, or a
    slice whose bounds its neighbours share, so that the credits, each rounded as
    `charged_for(high) - charged_for(low)`, sum exactly to the rounded whole."""

    low: Decimal
    high: Decimal


_WHOLE = _Share(Decimal(0), Decimal(1))


@dataclasses.dataclass(frozen=True, slots=True)
class _Charge:
    """What one charged line of a fee (its own line or a balance of it) charged, over the line's
    own period: a balance made after its fee was cut short (a change after the issue) bills the
    fee's shorter time, and spread over the line's longer one it would credit a later version
    with what it charged for time before that version. `balance`: a balance line, not the fee's
    own."""

    key: str
    period: Period
    amount: Decimal
    balance: bool
    # The part of it that counts for the fee it is netted against (a replaced plan's pooled fee).
    share: _Share = _WHOLE


def _credit(service: Period, charges: Sequence[_Charge], currency: currencies.Currency) -> Decimal:
    """What the charges charged for `service`'s time: whole ones summed and rounded once (as
    `charged_for`), and each pooled slice as the difference of its bounds' rounded amounts, so
    that the fees a pool is shared among are credited, between them, its rounded whole (three
    fees sharing 20.00 alike: 6.67, 6.66 and 6.67, not 6.67 each)."""
    whole = [(x.period, x.amount) for x in charges if x.share == _WHOLE]
    credit = charged_for(service, whole, currency)
    sliced: dict[_Share, list[tuple[Period, Decimal]]] = {}
    for x in charges:
        if x.share != _WHOLE:
            sliced.setdefault(x.share, []).append((x.period, x.amount))
    for share, charged in sliced.items():
        credit += charged_for(service, charged, currency, share.high) - charged_for(
            service, charged, currency, share.low
        )
    return credit


def _charges(
    lines: Sequence[tuple[InvoiceLine, InvoiceStatus]], editable: set[InvoiceStatus], *, voided: _Voided = _Voided.NONE
) -> list[_Charge]:
    return [
        _Charge(
            _fee_key(line) or "", Period(line.period_start, line.period_end), _line_total(line), line.sync_key is None
        )
        for line, status in lines
        if _charged(line, status, editable, voided=voided)
    ]


def _fee_rates(subscription: Subscription) -> dict[str, Fraction]:
    """The recurring flat fees of the subscription's plan in force at its start (not add-ons' items
    of their own), by key: what each charges a second then, its plan price (without add-ons'
    extensions) after its percentage discount, over its cadence from then."""
    start = subscription.active_from
    currency = currencies.get(subscription.currency)
    out: dict[str, Fraction] = {}
    for view in all_items(subscription.spec):
        item = view.spec
        card = item.base or item.rate_card
        if item.addon_id is not None or not view.contains(start):
            continue
        if not isinstance(card, RateCard) or not isinstance(card.price, FlatPrice):
            continue
        cadence = billing_terms(card).cadence
        if cadence is None:
            continue
        amount, off = rate_flat_units(card.price.amount, item.quantity, currency, card.discounts)
        out[item.key] = Fraction(amount - off) / int((cadence.add_to(start) - start).total_seconds())
    return out


def _pooled(rates: Mapping[str, Fraction]) -> list[tuple[str, _Share]]:
    """Each fee's slice of a credit pooled among the fees of `rates`, in the order of their keys:
    in proportion to what each charges a second, or alike when none charges anything. One fee
    takes it whole."""
    keys = sorted(rates)
    if len(keys) == 1:
        return [(keys[0], _WHOLE)]
    total = sum(rates.values(), Fraction(0))
    weights = [rates[key] if total else Fraction(1) for key in keys]
    total = total or Fraction(len(keys))
    out: list[tuple[str, _Share]] = []
    (low, so_far) = (Decimal(0), Fraction(0))
    with localcontext(EXACT):
        for key, weight in zip(keys, weights, strict=True):
            so_far += weight
            ratio = so_far / total
            high = Decimal(ratio.numerator) / Decimal(ratio.denominator)
            out.append((key, _Share(low, high)))
            low = high
    return out


def _successor_shares(successor: Subscription) -> list[tuple[str, _Share]]:
    """What share of what the plans a change replaced charged for the time after it each
    recurring flat fee of the successor nets: those in force at its start share it in proportion
    to what each charges (alike when none charges anything; team's "base" against pro's "base":
    whole; against duo's "platform" at 60.00 and "extra" at 10.00 a month: six sevenths and one
    seventh). So a plan change credits the replaced plan's issued time once, whatever its fees and
    the new plan's are called, and in proportion to the new plan's prices, so that no fee is
    floored at 0 unless all of them are (the new plan costs less for that time than the old one
    charged: a downgrade). Fixed by the plan at the start: an item added by an edit later takes
    none, so lines already netted stay right."""
    rates = _fee_rates(successor)
    return _pooled(rates) if rates else []


# A line of a replaced plan's fee, as an earlier version of a successor's fee: for what share of it.
_ReplacedLine = tuple[InvoiceLine, InvoiceStatus, _Share]


def _replaced_fees(
    subscription: Subscription,
    chain: Sequence[Subscription],
    held: dict[str, list[tuple[InvoiceLine, InvoiceStatus]]],
) -> dict[str, list[_ReplacedLine]]:
    """The lines of the subscriptions a plan change replaced on the way to `subscription` (`chain`)
    that bill a recurring fee by time, by the rate-card key of each fee of `subscription` they are
    earlier versions of, with the share of each that counts for it (`_successor_shares`): every
    fee of every plan in the chain, whatever its key. Each plan in between was billed net of those
    before it in the same proportions, so what they all charged for a time after the last change
    is what was paid for it, once. Not a one-time fee, and not the fee of a subscription that does
    not prorate (its period cut by the change is owed whole, issued or not, as it is billed when it
    was not issued yet: no credit for the time after the change)."""
    out: dict[str, list[_ReplacedLine]] = {}
    if not chain:
        return out
    shares = _successor_shares(subscription)
    for replaced in chain:
        if not replaced.pro_rating.enabled:
            continue
        recurring = {
            item.id
            for phase in replaced.spec.phases
            for item in phase.items
            if billing_terms(item.rate_card).cadence is not None
        }
        for line, status in held.get(replaced.id, []):
            key = _fee_key(line)
            if key is None or line.subscription is None or line.subscription.item_id not in recurring:
                continue
            for target, share in shares:
                out.setdefault(target, []).append((line, status, share))
    return out


def _net_of_issued(
    expected: dict[str, _Expected],
    held: Sequence[tuple[InvoiceLine, InvoiceStatus]],
    editable: set[InvoiceStatus],
    replaced: Mapping[str, Sequence[_ReplacedLine]] | None = None,
    *,
    voided: _Voided = _Voided.NONE,
) -> dict[str, _Expected]:
    """The expected lines with each recurring flat fee billed net of what issued lines already
    charged for its time, as billing systems prorate an upgrade: the issued line cannot change (no
    credit notes), so the later one bills only the difference. Those are the lines of the same
    subscription item when the fee is prorated (its other versions, or other keys of it: a fee
    add-on bought after the month's 30.00 was issued bills 23.33 - 20.00 = 3.33 for Nov 11 -
    Dec 1, not 23.33 on top) and,
    after a plan change, the fee's share of the recurring fees of the subscriptions it replaced
    (`replaced`, by the fee's rate-card key: `_replaced_fees`). A net below 0 (a downgrade) is
    floored: no line, and nothing is given back (that needs credit notes). Issued lines do not
    change, so a re-run nets the same: the sync stays idempotent. `voided`: as if (those
    lines of) voided invoices still charged what they did (what a fee was netted of before a void:
    `_balances`).
    A fee's own balances count against its line only when no line of its own charges: a void put
    that line back to be billed again, and the line made again bills the fee less what they still
    charge, or charged before a void forgave them (pro's 40.00 issued as 20.00 net, completed by a
    balance of 20.00, then voided: made again, 20.00, whether the balance stands or was forgiven)."""
    issued: dict[str, list[_Charge]] = {}
    charging = set()
    for charge in _charges(held, editable, voided=voided):
        issued.setdefault(item_of(charge.key), []).append(charge)
        if not charge.balance:
            charging.add(charge.key)
    # A balance a void forgave still counts against its own fee's line made again (what it charged
    # was owed; the void forgave it), not against other fees: those bill what it credited them as
    # balances of their own. (Counted already when voided lines count.)
    forgiven_balances: dict[str, list[_Charge]] = {}
    if voided is _Voided.NONE:
        for charge in _charges(
            [(x, st) for x, st in held if st is InvoiceStatus.VOIDED], editable, voided=_Voided.FORGIVEN
        ):
            if charge.balance:
                forgiven_balances.setdefault(charge.key, []).append(charge)
    issued_before: dict[str, list[_Charge]] = {}
    for key, lines in (replaced or {}).items():
        for line, status, share in lines:
            for charge in _charges([(line, status)], editable, voided=voided):
                issued_before.setdefault(key, []).append(dataclasses.replace(charge, share=share))
    if not issued and not issued_before and not forgiven_balances:
        return expected
    out: dict[str, _Expected] = {}
    for key, want in expected.items():
        line = want.line
        service = Period(line.period_start, line.period_end)
        if line.type is not LineType.FLAT_FEE or want.item.one_time:
            out[key] = want
            continue
        # The item's own issued versions count against a prorated fee only (without proration each
        # version bills whole, issued or not), the fee's own balances against any; what a replaced
        # plan's fee charged for this time counts against any recurring fee (not yet issued, that
        # fee would be cut to the change).
        item = issued.get(item_of(key), [])
        candidates = (item if want.prorated else [x for x in item if x.key == key]) + issued_before.get(
            rate_card_key_of(key), []
        )
        own_forgiven = forgiven_balances.get(key, []) if key not in charging else []
        overlapping = [
            x
            for x in [*candidates, *own_forgiven]
            if (x.key != key or (x.balance and key not in charging))
            and x.period.start < service.end
            and service.start < x.period.end
        ]
        if not overlapping:
            out[key] = want
            continue
        currency = currencies.get(line.currency)
        credit = _credit(service, overlapping, currency)
        if credit == 0:
            # An overlap too short to have charged a minor unit: the line as it is.
            out[key] = want
            continue
        # Netted after each line's discount (what was charged, what this one would charge), then
        # given the amount whose own discount leaves the net.
        net = _line_total(line) - credit
        if net <= 0:
            continue
        assert line.quantity is not None
        periods = ", ".join(dict.fromkeys(f"{rfc3339(x.period.start)} - {rfc3339(x.period.end)}" for x in overlapping))
        netted = f"less {credit} already invoiced for {periods}"
        out[key] = evolve(
            want,
            line=evolve(
                line,
                per_unit_amount=flat_per_unit(
                    flat_amount_charging(net, currency, line.rate_card_discounts), line.quantity, currency
                ),
                description=f"{line.description}; {netted}" if line.description else netted,
                netted_of=credit,
            ),
        )
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class _LineEdits:
    """Lines to make, change (on the gathering invoice) and remove beyond the plan's items: balance
    lines (`_balances`) and usage parts a void put back (`_usage_parts_again`)."""

    create: tuple[InvoiceLine, ...] = ()
    update: tuple[InvoiceLine, ...] = ()
    delete: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _planned(
    subscription: Subscription,
    gross: dict[str, _Expected],
    held: dict[str, list[tuple[InvoiceLine, InvoiceStatus]]],
    chain: Sequence[Subscription],
    netted: bool,
    editable: set[InvoiceStatus],
    now: datetime,
) -> tuple[dict[str, _Expected], dict[str, list[tuple[InvoiceLine, InvoiceStatus]]], SyncPlan, _LineEdits]:
    """What the subscription's lines should be (`gross`, its billable items' lines, netted of what
    issued lines charged), its held lines by sync key, and what to change: the sync's plan and the
    balances. `held`: the lines of the subscription and of its `chain` (those plan changes
    replaced on the way to it), whose fees it is billed net of when `netted` (not when the workflow
    now bills a replaced plan's cut period whole: they still say what a void took back from a fee
    netted before)."""
    mine = held[subscription.id]
    # A line a void put back to be billed again holds no item's place (the plan makes the item's
    # line again) and is no line of its fee (the fee's own lines and balances are the others).
    # As a voided line it still says what it charged before its void: what later fees were
    # netted of, which, if the fee it billed is owed less now, they bill as a balance.
    live = [(line, status) for line, status in mine if not put_back_by_a_void(line, status)]
    chain_fees = _replaced_fees(subscription, chain, held)
    replaced = chain_fees if netted else {}
    expected = _net_of_issued(gross, mine, editable, replaced)
    parts, plan = _plan(expected, live, editable)
    again = _usage_parts_again(expected, mine, parts, plan)
    closing = _closing_parts(expected, parts, editable)
    lines = [*mine, *((line, status) for fee in chain_fees.values() for line, status, _ in fee)]
    voided = any(st is InvoiceStatus.VOIDED and x.type is LineType.FLAT_FEE for x, st in lines)
    # Netted now; as if no void had happened (against it: what voids took back from the netting,
    # none without one); and as if no void had forgiven anything (against that: what the voids
    # that bill a line again took back). Each fee netted as its issued lines were: a fee the end
    # now bills whole (bill_full_period) was netted prorated before the end was known, and a
    # void still takes back what that netting counted (its lines' `netted_of` bound the balance);
    # a fee whose line went out before an end cut its time was netted over the time that line
    # covers. Not when replaced by a plan change: its successor nets the fees' time after it.
    superseded = SUPERSEDING_ANNOTATION in subscription.annotations
    as_issued = {key: want.as_netted_before_the_end() for key, want in gross.items()}
    cut = {} if superseded else _issued_before_the_cut(gross, live, editable)
    as_issued.update({key: gross[key].issued_until(end) for key, end in cut.items()})
    if netted and all(want is as_issued[key] for key, want in gross.items()):
        now_netted = expected
    else:
        now_netted = _net_of_issued(as_issued, mine, editable, chain_fees)
    unvoided = _net_of_issued(as_issued, mine, editable, chain_fees, voided=_Voided.ALL) if voided else now_netted
    forgiven = _net_of_issued(as_issued, mine, editable, chain_fees, voided=_Voided.FORGIVEN) if voided else now_netted
    balances = _balances(gross, expected, now_netted, unvoided, forgiven, live, editable, now, superseded, set(cut))
    return expected, parts, plan, evolve(balances, create=(*balances.create, *again, *closing))


def _stretched_part(parts: Sequence[tuple[InvoiceLine, InvoiceStatus]], want: _Expected | None) -> InvoiceLine | None:
    """The part of a partly invoiced item a correction stretches to the item's end: the latest
    gathering part, when the item now ends after every part (a draft's part only shrinks)."""
    if want is None or want.item.service_period.end <= max(line.period_end for line, _ in parts):
        return None
    gathering = (line for line, status in parts if status is InvoiceStatus.GATHERING)
    return max(gathering, key=lambda x: x.period_end, default=None)


def _usage_parts_again(
    expected: dict[str, _Expected],
    mine: Sequence[tuple[InvoiceLine, InvoiceStatus]],
    parts: dict[str, list[tuple[InvoiceLine, InvoiceStatus]]],
    plan: SyncPlan,
) -> list[InvoiceLine]:
    """Usage parts a void put back to be billed again in a period another part of which stands
    (billed progressively: an invoice-now part, or the month's last part, voided). The plan
    compares an item's whole time with its parts', so it makes nothing for them: each is made
    again here over its own time (cut to the item's, should the subscription have been cut since),
    as the item's line under the same period key, so it bills what the voided part billed and what
    was stored since. Not where a live part of the item covers that time already (the part made
    again before), nor for an item the user edited. A period no part of which stands, or none
    past gathering, is the plan's: it makes the item's line again whole, or stretches its
    gathering part over the whole item (as it does when the voided part was the period's last:
    the live parts then end before the item does)."""
    planned = {i.key for i in (*plan.create, *plan.update)} | set(plan.delete)
    out: list[InvoiceLine] = []
    for line, status in mine:
        want = expected.get(line.sync_key or "")
        if (
            want is None
            or want.item.key in planned
            or line.type is not LineType.USAGE_BASED
            or not put_back_by_a_void(line, status)
        ):
            continue
        live = [x for x, _ in parts.get(want.item.key, [])] + [x for x in out if x.sync_key == line.sync_key]
        if not live or any(x.managed_by is ManagedBy.MANUAL for x in live):
            continue
        service = want.item.service_period
        start, end = max(line.period_start, service.start), min(line.period_end, service.end)
        # A correction stretching the latest gathering part to the item's end covers the voided
        # part's time with it: made again too, that time would be billed twice.
        stretched = _stretched_part(parts[want.item.key], want) if want.item.key in plan.corrections else None
        covered = any(
            x.deleted_at is None and x.period_start < end and start < (service.end if x is stretched else x.period_end)
            for x in live
        )
        if start < end and not covered:
            out.append(evolve(want.line, period_start=start, period_end=end))
    return out


def _closing_parts(
    expected: dict[str, _Expected],
    parts: dict[str, list[tuple[InvoiceLine, InvoiceStatus]]],
    editable: set[InvoiceStatus],
) -> list[InvoiceLine]:
    """A line closing each usage period under a minimum spend whose item an end cut to meet a part
    already issued exactly (periods are billed at whole seconds: an invoice-now issued at once and
    an immediate cancellation in the same second). No line of such a period was rated as its last,
    and an issued line is not rated again, so its minimum spend was never judged. The closing line
    lies over no time at the period's new end: rated as the period's last, above what the parts
    billed, it charges the shortfall (and usage stored late since), and it closes the period, so
    later corrections bill above the minimum. Not where a part still open reaches the end (the
    sync ends that part there: it closes the period itself), nor where a line closes it already
    (this one made before, whatever became of it: a void that forgave it counts it as billed, one
    that bills it again leaves it to be made again), nor among lines a user edited, nor where what
    the parts billed meets the minimum already (the line would charge nothing: an invoice of 0.00;
    late usage is then billed by corrections in full, as the minimum is passed)."""
    out: list[InvoiceLine] = []
    for key, want in expected.items():
        line, end = want.line, want.item.service_period.end
        minimum = line.price.commitments.minimum_amount if line.price is not None else None
        if line.type is not LineType.USAGE_BASED or minimum is None or end >= want.item.full_period.end:
            continue
        held = parts.get(key, [])
        if any(x.managed_by is ManagedBy.MANUAL for x, _ in held):
            continue
        # What stays after this pass: a part that starts at or after the end goes (`_apply`), but
        # for a closing line, which lies at the end.
        staying = [
            (x, status)
            for x, status in held
            if x.deleted_at is None and (x.period_start < end or x.period_start == x.period_end == end)
        ]
        if (
            not staying
            or any(status in editable and x.period_start < end for x, status in staying)
            or max(x.period_end for x, _ in staying) != end
            or any(closes_its_period(x) for x, _ in staying)
            or sum((x.totals.total for x, _ in staying), Decimal(0)) >= minimum
        ):
            continue
        out.append(evolve(line, period_start=end, period_end=end, full_period_end=end))
    return out


def _issued_before_the_cut(
    gross: dict[str, _Expected], held: Sequence[tuple[InvoiceLine, InvoiceStatus]], editable: set[InvoiceStatus]
) -> dict[str, datetime]:
    """The prorated flat fees whose own line was issued before an end cut their time short (an
    immediate cancellation after the month's in-advance line went out, an edit removing the item),
    with the end of the time that line covers. Such a line stays as issued (no credit notes), so the fee is
    owed as it was issued, and what a void took back from its netting is judged over that time
    (`_balances`). That includes a fee the end now bills whole (bill_full_period): its line was
    issued prorated before the end was known, and billing the period whole must not leave it owing
    less than prorating would. Not a fee a later version of its item follows (`_succeeded`): that
    version was netted of its time after the cut."""
    out: dict[str, datetime] = {}
    for line, status in held:
        want = gross.get(line.sync_key) if line.sync_key is not None else None
        if want is None:
            continue
        netted = want.as_netted_before_the_end()
        if (
            not netted.prorated
            or line.type is not LineType.FLAT_FEE
            or line.deleted_at is not None
            or status is InvoiceStatus.GATHERING
            or status in editable
            or status in _NOT_BILLED
            or line.period_end <= netted.line.period_end
            or line.period_start != netted.line.period_start
            or _succeeded(want.item.key, want, gross)
        ):
            continue
        out[want.item.key] = max(out.get(want.item.key, line.period_end), line.period_end)
    return out


def _balances(
    gross: dict[str, _Expected],
    expected: dict[str, _Expected],
    netted: dict[str, _Expected],
    unvoided: dict[str, _Expected],
    forgiven: dict[str, _Expected],
    held: Sequence[tuple[InvoiceLine, InvoiceStatus]],
    editable: set[InvoiceStatus],
    now: datetime,
    superseded: bool = False,
    kept_as_issued: Collection[str] = (),
) -> _LineEdits:
    """A flat fee issued net of a line whose invoice was voided since bills what it was netted of
    as a balance line, as it would have been billed had the void come first: pro's 40.00 for
    Nov 11 - Dec 1 issued as 20.00 net of team's 30.00, team's invoice then voided, bills 20.00
    more. The balance is what the void took back from the netting (`netted`, the fee netted now,
    against `unvoided`, as if voided invoices still charged; both of the chain's fees even when a
    workflow switched to bill_full_period nets them no more), at most what the fee is owed
    (`expected`) beyond what
    its lines on invoices past gathering billed; those count voided ones too (a void forgives what
    its own invoice charged, no more), so a voided balance is not billed again. A fee cut short
    after its issue by what bills its time after the cut (a plan change, `superseded`; a later
    version of its item) counts only what its lines charged for its own time: the later fee was
    netted of the rest (team -> pro -> max, both net lines issued, team's invoice then voided:
    pro's 20.00 charged 10.00 for its ten days and max was netted of the other 10.00, so pro owes
    10.00 more, not nothing). A fee whose own line a void forgave (discarded) owes no balance
    for what another forgiven line had credited it (had that void come first, its line would have
    been the whole fee, forgiven whole: `forgiven`, netted as if forgiven lines still charged), but
    does for what a line a void put back to be billed again had credited it: billing a line again
    changes no total (pro's net line forgiven, then team's month voided to be billed again, cut
    to team's ten days: pro owes 20.00 more). Nothing else moves
    an issued fee: a fee owed more after its issue for another reason (a workflow switched to
    bill_full_period) stays as issued, as OpenMeter leaves an immutable line. A fee whose line was
    issued before an end cut its time (`kept_as_issued`) is owed that line as it
    would have been issued had the void come first, however little its time is worth now: pro's
    20.00 net line, team's invoice voided to be billed again and pro canceled on Nov 16, in either
    order, owes the 20.00 balance (billing again changes no total). A balance still gathering
    follows what is owed (as a fee's own line does); one on a draft or later stays.
    Nothing is given back (that needs credit notes). A fee whose own line is still editable
    follows what it is owed itself, and one the user edited is the user's (a balance the user edited
    or deleted too: not made again)."""
    by_fee: dict[str, list[tuple[InvoiceLine, InvoiceStatus]]] = {}
    # A fee with a line the user edited or deleted (a deleted line is still held) is the user's.
    users: set[str] = set()
    for line, status in held:
        key = _fee_key(line)
        if key is None or line.type is not LineType.FLAT_FEE:
            continue
        if line.managed_by is ManagedBy.MANUAL:
            users.add(key)
        if line.deleted_at is None:
            by_fee.setdefault(key, []).append((line, status))
    create: list[InvoiceLine] = []
    update: list[InvoiceLine] = []
    delete: list[str] = []
    for key, lines in by_fee.items():
        if key in users:
            continue
        own = [st for x, st in lines if x.sync_key is not None]
        gathering = [x for x, st in lines if x.sync_key is None and st is InvoiceStatus.GATHERING]
        # A fee whose own line a void forgave is owed only what the voids that bill again took.
        taken_from = forgiven if any(st is InvoiceStatus.VOIDED for st in own) else netted
        want, before = expected.get(key), unvoided.get(key)
        past = [x for x, st in lines if st is not InvoiceStatus.GATHERING and st not in _NOT_BILLED]
        billed = sum((_line_total(x) for x in past), Decimal(0))
        if want is not None and (superseded or _succeeded(key, want, gross)):
            service = Period(want.item.service_period.start, want.item.service_period.end)
            by_line = [(Period(x.period_start, x.period_end), _line_total(x)) for x in past]
            billed = charged_for(service, by_line, currencies.get(want.line.currency))
        owed = _line_total(want.line) if want is not None else Decimal(0)
        taken = _line_total(found.line) if (found := taken_from.get(key)) is not None else Decimal(0)
        if key in kept_as_issued:
            # Its line issued before the end cut its time stays as issued: the fee is owed that
            # line as it would have been issued had the void come first (netted of what still
            # charges), however little the time the end left it is worth.
            owed = max(owed, taken)
        # What the voids took back from the netting, less the balances billed for it already. The
        # fee's own shortfall (`owed - billed`) is not always the bound that stops a second
        # balance: a fee owed more than it was billed for another reason (its period billed whole
        # once the subscription ended in it, under bill_full_period) is still short after its
        # balance, and without this every pass would bill the take-back again.
        balanced = sum((_line_total(x) for x in past if x.sync_key is None), Decimal(0))
        took_back = taken - (_line_total(before.line) if before is not None else Decimal(0))
        rest = min(owed - billed, took_back - balanced)
        # Nor more than the fee's lines were billed net of, less those balances: a fee billed
        # whole (its workflow billing the period a subscription ends in whole from the start)
        # owes no balance when a line before it is voided. Lines made before migration 0027 did
        # not record it.
        own_past = [x.netted_of for x in past if x.sync_key is not None]
        if own_past and None not in own_past:
            rest = min(rest, sum((x for x in own_past if x is not None), Decimal(0)) - balanced)
        if want is None or not own or any(st in editable for st in own) or rest <= 0:
            delete.extend(x.id for x in gathering)
            continue
        balance = _balance(want, key, rest, now)
        if not gathering:
            create.append(balance)
            continue
        first, *others = gathering
        delete.extend(x.id for x in others)
        if _billed(first) != _billed(balance) or first.description != balance.description:
            update.append(_refresh(first, balance, now))
    return _LineEdits(tuple(create), tuple(update), tuple(delete))


def _succeeded(key: str, want: _Expected, gross: dict[str, _Expected]) -> bool:
    """Whether a later version of the fee's item (an add-on bought, changed or taken off) starts
    where the fee's time ends: that version is billed net of the fee's lines after it."""
    end = want.item.service_period.end
    return any(
        other != key and item_of(other) == item_of(key) and x.item.service_period.start == end
        for other, x in gross.items()
    )


def _balance(want: _Expected, key: str, rest: Decimal, now: datetime) -> InvoiceLine:
    """The balance line billing `rest` more of the fee `want` (sync key `key`): due now, over the
    fee's period, saying so after its rate card's description."""
    wanted = want.line
    period = f"{rfc3339(wanted.period_start)} - {rfc3339(wanted.period_end)}"
    said = f"balance for {period}: {rest} it was billed net of, on invoices since voided"
    card = want.item.rate_card.description if isinstance(want.item.rate_card, RateCard) else None
    return evolve(
        wanted,
        managed_by=ManagedBy.SYSTEM,
        sync_key=None,
        per_unit_amount=flat_amount_charging(rest, currencies.get(wanted.currency), wanted.rate_card_discounts),
        quantity=Decimal(1),
        invoice_at=max(wanted.invoice_at, now),
        description=f"{card}; {said}" if card else said,
        metadata={**wanted.metadata, BALANCE_OF: key},
        netted_of=None,  # the fee's own lines say what it was netted of
        created_at=now,
        updated_at=now,
    )


def _line(
    subscription: Subscription, item: BillableItem, phase_id: str, now: datetime, *, full_period_at_end: bool = False
) -> InvoiceLine | None:
    """The gathering line the item expects. `full_period_at_end`: the workflow bills a period
    shortened by the subscription's end in full (bill_full_period), not prorated."""
    card = item.rate_card
    assert isinstance(card, RateCard), type(card)
    price = card.price
    if price is None:
        return None
    service = Period(item.service_period.start, item.service_period.end)
    full = Period(item.full_period.start, item.full_period.end)
    common = {
        "id": "",
        "namespace": subscription.namespace,
        "invoice_id": "",
        "status": LineStatus.VALID,
        "managed_by": ManagedBy.SUBSCRIPTION,
        "name": card.name,
        "description": card.description,
        "currency": subscription.currency,
        "period_start": service.start,
        "period_end": service.end,
        "invoice_at": item.invoice_at,
        "created_at": now,
        "updated_at": now,
        "sync_key": item.key,
        "tax_config": card.tax_config,
        # A flat fee keeps its rate card's feature too (OpenMeter's expected line does): the line
        # and its rate card name the feature the fee pays for.
        "feature_key": card.feature_key,
        "subscription": SubscriptionRef(
            subscription.id,
            phase_id,
            item.item_id,
            item.billing_period.start if item.billing_period else None,
            item.billing_period.end if item.billing_period else None,
        ),
    }
    if isinstance(price, FlatPrice):
        prorate = _prorates(subscription, item, full_period_at_end)
        currency = currencies.get(subscription.currency)
        quantity = Decimal(item.quantity)
        per_unit = flat_fee_per_unit(RatingInput(price, currency, service, full, prorate=prorate), quantity)
        if per_unit == 0:
            return None
        return InvoiceLine(
            type=LineType.FLAT_FEE,
            full_period_start=full.start,
            full_period_end=full.end,
            per_unit_amount=per_unit,
            quantity=quantity,
            payment_term=price.payment_term.value,
            # The rate card's percentage discount comes off when the line is rated (rate_lines).
            rate_card_discounts=card.discounts,
            netted_of=Decimal(0),  # until _net_of_issued nets it
            **common,  # type: ignore[arg-type]
        )
    return InvoiceLine(
        type=LineType.USAGE_BASED,
        full_period_start=service.start,
        full_period_end=service.end,
        period_key=item.key,
        price=price,
        rate_card_discounts=card.discounts,
        **common,  # type: ignore[arg-type]
    )


def _refresh(held: InvoiceLine, wanted: InvoiceLine, now: datetime) -> InvoiceLine:
    """The held gathering line with the item's current period, due time and amount."""
    return evolve(
        held,
        period_start=wanted.period_start,
        period_end=wanted.period_end,
        full_period_start=wanted.full_period_start,
        full_period_end=wanted.full_period_end,
        invoice_at=wanted.invoice_at,
        per_unit_amount=wanted.per_unit_amount,
        quantity=wanted.quantity,
        # A netted fee says what it is net of (_net_of_issued).
        description=wanted.description,
        netted_of=wanted.netted_of,
        subscription=wanted.subscription,
        updated_at=now,
    )


async def _reschedule(
    tx: BillingStore, gathering: Invoice, now: datetime, lines: Sequence[InvoiceLine] | None = None
) -> None:
    """The gathering invoice's schedule from its lines (`lines`, when the caller knows them all)."""
    if lines is None:
        lines = (await tx.invoices.lines(gathering.namespace, [gathering.id]))[gathering.id]
    if not [x for x in lines if x.parent_line_id is None]:
        # An emptied gathering invoice disappears.
        await tx.invoices.update(evolve(gathering, deleted_at=now, updated_at=now))
    else:
        await tx.invoices.update(gathering_schedule(gathering, lines, now))
