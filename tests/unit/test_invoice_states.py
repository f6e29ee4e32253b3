"""The invoice transition table: every state x action x guard combination, the lifecycles OpenMeter
documents (auto and manual approval, draft period, custom invoicing's hooks, the sandbox straight to
paid, failures and retry, void), and random action sequences (hypothesis)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import defaultdict, deque
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.billing.apps.custom_invoicing import CustomInvoicingApp
from domain.billing.apps.models import App, AppType, CustomInvoicingSettings
from domain.billing.apps.port import InvoiceView, InvoicingApp, SyncResult, customer_prefix, invoice_number
from domain.billing.apps.sandbox import TARGET_PAYMENT_STATUS_KEY, SandboxApp
from domain.billing.invoice_states import (
    API_ACTIONS,
    FAILED_STATES,
    FINAL_STATES,
    PAYMENT_TRIGGERS,
    TABLE,
    Action,
    Actor,
    AppHook,
    Conditions,
    HookOutcome,
    InvalidTransitionError,
    InvoiceStatus,
    State,
    allowed,
    available_actions,
    drive,
    fire,
    immutable,
    resulting_state,
    settle,
    transition,
)
from domain.errors import ValidationError

NOW = datetime(2026, 1, 31, tzinfo=UTC)
ALL_CONDITIONS = [Conditions(*values) for values in itertools.product((False, True), repeat=len(Conditions.__slots__))]
DEFAULT = Conditions()
DRAFTS = [s for s in State if s.status is InvoiceStatus.DRAFT]


def test_every_state_action_and_condition_has_at_most_one_row() -> None:
    checked = 0
    for state, action, conditions in itertools.product(State, Action, ALL_CONDITIONS):
        rows = [t for t in TABLE if t.source is state and t.action is action and t.permitted(conditions)]
        assert len(rows) <= 1, (state, action, conditions, rows)
        row = transition(state, action, conditions)
        assert allowed(state, action, conditions) is bool(rows)
        if rows:
            assert row == rows[0]
            assert fire(state, action, conditions).target is rows[0].target
        else:
            assert row is None
            with pytest.raises(InvalidTransitionError) as refused:
                fire(state, action, conditions)
            # Refusals are 400s with the state in the message, as OpenMeter answers.
            assert isinstance(refused.value, ValidationError) and state.value in refused.value.message
        checked += 1
    assert checked == len(State) * len(Action) * 64


def test_available_actions_are_read_from_the_table() -> None:
    for state, conditions in itertools.product(State, ALL_CONDITIONS):
        actions = available_actions(state, conditions)
        assert set(actions) == {a for a in API_ACTIONS if allowed(state, a, conditions)}
        for action, target in actions.items():
            first = fire(state, action, conditions).target
            # Past the action itself, the invoice's current validation issues do not count.
            path = settle(first, dataclasses.replace(conditions, critical_issues=False))
            assert target is (path[-1].target if path else first)
            assert resulting_state(state, action, conditions) is target
        if state is not State.GATHERING:
            assert immutable(state, conditions) is not allowed(state, Action.UPDATE, conditions)


def test_a_retrys_resulting_state_does_not_count_the_issues_it_retries() -> None:
    """An invalid draft's retry leads, as far as the table can tell, to where a draft without
    issues goes: OpenMeter works out an action's resulting state with the invoice's validation
    issues cleared (openmeter/billing/service/stdinvoicestate.go calculateAvailableActionDetails),
    and its retry turns critical issues into warnings (invoice.go RetryInvoice). Tally stopped at
    draft.validating, counting the very issues the retry validates again."""
    invalid = Conditions(critical_issues=True)
    assert available_actions(State.DRAFT_INVALID, invalid) == {
        Action.RETRY: State.PAYMENT_PENDING,
        Action.DELETE: State.DELETED,
    }
    manual = Conditions(auto_advance=False, critical_issues=True)
    assert available_actions(State.DRAFT_SYNC_FAILED, manual)[Action.RETRY] is State.DRAFT_MANUAL_APPROVAL_NEEDED
    # Whether the action itself is allowed still counts them: no approval with critical issues.
    assert Action.APPROVE not in available_actions(State.DRAFT_MANUAL_APPROVAL_NEEDED, manual)


def test_table_shape() -> None:
    sources = {t.source for t in TABLE}
    assert {State.PAID, State.VOIDED, State.DELETED} == FINAL_STATES
    assert sources | FINAL_STATES == set(State)
    # Every state is reachable from a gathering invoice.
    seen, todo = {State.GATHERING}, deque([State.GATHERING])
    while todo:
        for t in TABLE:
            if t.source is todo[0] and t.target not in seen:
                seen.add(t.target)
                todo.append(t.target)
        todo.popleft()
    assert seen == set(State)
    # The worker's advances never loop.
    advances = defaultdict(set)
    for t in TABLE:
        if t.action is Action.ADVANCE:
            advances[t.source].add(t.target)

    def depth(state: State, trail: frozenset[State]) -> int:
        assert state not in trail, f"ADVANCE cycle through {state}"
        return 1 + max((depth(n, trail | {state}) for n in advances[state]), default=0)

    assert all(depth(s, frozenset()) < 20 for s in State)
    # A failed state always has a way out.
    for state in FAILED_STATES:
        assert any(t.source is state and t.action in (Action.RETRY, Action.DELETE) for t in TABLE), state
    # Actors: only the app reports payments and sync callbacks; only the worker fails a step.
    assert Action.FAIL.actor is Actor.WORKER
    assert {Action.APPROVE.actor, Action.VOID.actor, Action.ADVANCE.actor} == {Actor.USER}
    assert {a.actor for a in PAYMENT_TRIGGERS.values()} == {Actor.APP}
    # Statuses are OpenMeter's.
    assert {s.status for s in State} == set(InvoiceStatus)


def test_auto_approval_runs_from_draft_to_payment() -> None:
    path = settle(State.DRAFT_CREATED, DEFAULT)
    assert [t.target for t in path] == [
        State.DRAFT_WAITING_FOR_COLLECTION,
        State.DRAFT_COLLECTING,
        State.DRAFT_VALIDATING,
        State.DRAFT_SYNCING,
        State.DRAFT_WAITING_AUTO_APPROVAL,
        State.DRAFT_READY_TO_ISSUE,
        State.ISSUING_LINE_FINALIZATION,
        State.ISSUING_SYNCING,
        State.ISSUED,
        State.PAYMENT_PENDING,
    ]
    hooks = [t.hook for t in path if t.hook is not None]
    assert hooks == [AppHook.VALIDATE, AppHook.SYNC_DRAFT, AppHook.SYNC_ISSUING, AppHook.COLLECT_PAYMENT]


def test_manual_approval() -> None:
    manual = Conditions(auto_advance=False)
    assert settle(State.DRAFT_CREATED, manual)[-1].target is State.DRAFT_MANUAL_APPROVAL_NEEDED
    state = State.DRAFT_MANUAL_APPROVAL_NEEDED
    # Advancing before approval is refused (OpenMeter: 400); approving moves on; approving twice is refused.
    with pytest.raises(InvalidTransitionError):
        fire(state, Action.ADVANCE, manual)
    assert available_actions(state, manual) == {
        Action.APPROVE: State.PAYMENT_PENDING,
        Action.DELETE: State.DELETED,
    }
    approved = fire(state, Action.APPROVE, manual).target
    assert approved is State.DRAFT_READY_TO_ISSUE
    with pytest.raises(InvalidTransitionError):
        fire(approved, Action.APPROVE, manual)
    # Critical validation issues block approval.
    assert not allowed(state, Action.APPROVE, Conditions(auto_advance=False, critical_issues=True))


def test_draft_period_and_collection_wait() -> None:
    waiting = Conditions(draft_period_over=False)
    assert settle(State.DRAFT_CREATED, waiting)[-1].target is State.DRAFT_WAITING_AUTO_APPROVAL
    assert allowed(State.DRAFT_WAITING_AUTO_APPROVAL, Action.APPROVE, waiting)
    assert not allowed(State.DRAFT_WAITING_AUTO_APPROVAL, Action.ADVANCE, waiting)

    not_due = Conditions(collection_due=False)
    assert settle(State.DRAFT_CREATED, not_due)[-1].target is State.DRAFT_WAITING_FOR_COLLECTION
    assert available_actions(State.DRAFT_WAITING_FOR_COLLECTION, not_due)[Action.SNAPSHOT_QUANTITIES] is (
        State.PAYMENT_PENDING
    )
    assert not allowed(State.DRAFT_COLLECTING, Action.SNAPSHOT_QUANTITIES, DEFAULT)


def test_gathering_invoice_only_invoices() -> None:
    assert available_actions(State.GATHERING, DEFAULT) == {Action.INVOICE: State.PAYMENT_PENDING}
    assert fire(State.GATHERING, Action.INVOICE, DEFAULT).target is State.DRAFT_CREATED
    # It still takes pending lines: OpenMeter shows a gathering invoice as immutable: false
    # (openmeter/billing/httpdriver/gatheringinvoice.go); Tally said true.
    assert not immutable(State.GATHERING, DEFAULT)


def test_void_and_delete() -> None:
    for state in (
        State.ISSUED,
        State.PAYMENT_PENDING,
        State.PAYMENT_FAILED,
        State.PAYMENT_ACTION_REQUIRED,
        State.OVERDUE,
        State.UNCOLLECTIBLE,
    ):
        row = fire(state, Action.VOID, DEFAULT)
        assert row.target is State.VOIDED and row.hook is AppHook.VOID
        assert not allowed(state, Action.DELETE, DEFAULT)
    for state in (State.PAID, State.VOIDED, *DRAFTS):
        assert not allowed(state, Action.VOID, DEFAULT), state
    for state in DRAFTS:
        assert available_actions(state, DEFAULT).get(Action.DELETE) is State.DELETED, state
    # An invoice the app voided itself is not voided again through the app.
    assert fire(State.PAYMENT_PENDING, Action.PAYMENT_VOID, DEFAULT).hook is None


def test_failures_and_retry() -> None:
    for state, failed_state, retried in (
        (State.DRAFT_VALIDATING, State.DRAFT_INVALID, State.DRAFT_VALIDATING),
        (State.DRAFT_SYNCING, State.DRAFT_SYNC_FAILED, State.DRAFT_VALIDATING),
        (State.ISSUING_LINE_FINALIZATION, State.ISSUING_LINE_FINALIZATION_FAILED, State.ISSUING_LINE_FINALIZATION),
        (State.ISSUING_SYNCING, State.ISSUING_FAILED, State.ISSUING_SYNCING),
    ):
        assert fire(state, Action.FAIL, DEFAULT).target is failed_state
        assert fire(failed_state, Action.RETRY, DEFAULT).target is retried
    # A failed delete is deleted again, not retried: OpenMeter's delete.failed permits only the
    # delete trigger (openmeter/billing/service/stdinvoicestate.go), so availableActions shows
    # delete alone and a retry is refused (400).
    assert fire(State.DELETE_SYNCING, Action.FAIL, DEFAULT).target is State.DELETE_FAILED
    assert fire(State.DELETE_FAILED, Action.DELETE, DEFAULT).target is State.DELETE_IN_PROGRESS
    assert not allowed(State.DELETE_FAILED, Action.RETRY, DEFAULT)
    assert available_actions(State.DELETE_FAILED, DEFAULT) == {Action.DELETE: State.DELETED}
    assert fire(State.PAYMENT_PENDING, Action.PAYMENT_FAILED, DEFAULT).target is State.PAYMENT_FAILED
    retry = fire(State.PAYMENT_FAILED, Action.RETRY, DEFAULT)
    assert retry.target is State.PAYMENT_PENDING and retry.hook is AppHook.COLLECT_PAYMENT


def view(metadata: dict[str, str] | None = None, number: str | None = None) -> InvoiceView:
    return InvoiceView(
        id="01JINVOICE0000000000000000",
        namespace="default",
        state=State.DRAFT_CREATED,
        currency="USD",
        customer_id="01JCUSTOMER000000000000000",
        customer_name="Acme Corp",
        total=Decimal("12.50"),
        created_at=NOW,
        number=number,
        metadata=metadata or {},
    )


class Numbers:
    def __init__(self) -> None:
        self.issued: dict[tuple[str, str], int] = defaultdict(int)

    async def next_number(self, namespace: str, scope: str) -> int:
        self.issued[(namespace, scope)] += 1
        return self.issued[(namespace, scope)]


def run_app(app: InvoicingApp, invoice: InvoiceView, hook: AppHook) -> HookOutcome:
    """The app's answer for a hook, as the worker turns it into a HookOutcome."""
    match hook:
        case AppHook.VALIDATE:
            issues = asyncio.run(app.validate_invoice(invoice))
            return HookOutcome(critical_issues=any(i.severity == "critical" for i in issues))
        case AppHook.SYNC_DRAFT:
            return HookOutcome(waiting=asyncio.run(app.sync_draft(invoice)).result is SyncResult.WAITING)
        case AppHook.SYNC_ISSUING:
            return HookOutcome(waiting=asyncio.run(app.sync_issuing(invoice)).result is SyncResult.WAITING)
        case AppHook.COLLECT_PAYMENT:
            return HookOutcome(trigger=asyncio.run(app.collect_payment(invoice)).outcome)
        case AppHook.DELETE:
            asyncio.run(app.delete_invoice(invoice))
            return HookOutcome()
        case AppHook.VOID:
            asyncio.run(app.void_invoice(invoice, None))
            return HookOutcome()


def make_app(app_type: AppType, settings: CustomInvoicingSettings | None = None) -> App:
    return App("01JAPP00000000000000000000", "default", app_type, "x", NOW, NOW, custom_invoicing=settings)


def test_sandbox_runs_straight_through_to_paid() -> None:
    sandbox = SandboxApp(make_app(AppType.SANDBOX), Numbers())
    result = drive(State.DRAFT_CREATED, DEFAULT, lambda hook: run_app(sandbox, view(), hook))
    assert result.state is State.PAID
    assert result.path[-1].action is Action.PAYMENT_PAID
    # The metadata switch picks another outcome, for tests of the payment states.
    failing = view({TARGET_PAYMENT_STATUS_KEY: "failed"})
    result = drive(State.DRAFT_CREATED, DEFAULT, lambda hook: run_app(sandbox, failing, hook))
    assert result.state is State.PAYMENT_FAILED
    # Manual approval stops the sandbox too, until approved.
    manual = Conditions(auto_advance=False)
    stopped = drive(State.DRAFT_CREATED, manual, lambda hook: run_app(sandbox, view(), hook))
    assert stopped.state is State.DRAFT_MANUAL_APPROVAL_NEEDED
    paid = drive(stopped.state, manual, lambda hook: run_app(sandbox, view(), hook), first=Action.APPROVE)
    assert paid.state is State.PAID


def test_sandbox_and_custom_invoicing_numbers() -> None:
    numbers = Numbers()
    sandbox = SandboxApp(make_app(AppType.SANDBOX), numbers)
    issued = asyncio.run(sandbox.sync_issuing(view()))
    assert issued.invoice_number == "OM-SANDBOX-ACCO-1"
    assert asyncio.run(sandbox.sync_issuing(view(number="OM-SANDBOX-ACCO-1"))).invoice_number == "OM-SANDBOX-ACCO-1"
    custom = CustomInvoicingApp(make_app(AppType.CUSTOM_INVOICING, CustomInvoicingSettings()), numbers)
    assert asyncio.run(custom.sync_issuing(view())).invoice_number == "INV-ACCO-1"
    assert customer_prefix("acme") == "ACME" and customer_prefix("") == "UNKN"
    assert invoice_number("INV", "Globex Industries Inc", 7) == "INV-GLIN-7"


def test_customer_prefix_follows_openmeters_rule() -> None:
    # OpenMeter's TestCustomerPrefix cases: names are transliterated before the letters are taken.
    cases = {
        "": "UNKN",
        "John": "JOHN",
        "Jo": "JO",
        "Peter Turi": "PETU",
        "P Turi": "PTU",
        "Líb Hosted": "LIHO",
        "Ábel Őri": "ABOR",
        "Péter Túri": "PETU",
        # Letters without a combining-mark decomposition, other scripts, and the split at each space.
        "Łukasz Straße": "LUST",
        "Иван Петров": "IVPE",
        "Acme, Inc.": "ACIN",
        " Leading": "LE",
    }
    assert {name: customer_prefix(name) for name in cases} == cases


def test_custom_invoicing_waits_for_the_integrator() -> None:
    hooks = CustomInvoicingApp(make_app(AppType.CUSTOM_INVOICING, CustomInvoicingSettings(True, True)), Numbers())
    call = lambda hook: run_app(hooks, view(), hook)  # noqa: E731
    waiting = drive(State.DRAFT_CREATED, DEFAULT, call)
    assert waiting.state is State.DRAFT_SYNCING and waiting.conditions.draft_sync_pending
    assert set(available_actions(waiting.state, waiting.conditions)) == {Action.DELETE}
    # Out of order: issuing/synchronized while the draft sync is pending is refused.
    assert not allowed(waiting.state, Action.ISSUING_SYNCHRONIZED, waiting.conditions)
    assert not allowed(waiting.state, Action.PAYMENT_PAID, waiting.conditions)

    issuing = drive(waiting.state, waiting.conditions, call, first=Action.DRAFT_SYNCHRONIZED)
    assert issuing.path[0].target is State.DRAFT_WAITING_AUTO_APPROVAL
    assert issuing.state is State.ISSUING_SYNCING and issuing.conditions.issuing_sync_pending
    # A second draft/synchronized is refused too.
    assert not allowed(issuing.state, Action.DRAFT_SYNCHRONIZED, issuing.conditions)

    pending = drive(issuing.state, issuing.conditions, call, first=Action.ISSUING_SYNCHRONIZED)
    assert pending.state is State.PAYMENT_PENDING
    paid = fire(pending.state, PAYMENT_TRIGGERS["paid"], pending.conditions)
    assert paid.target is State.PAID
    # After paid, a later payment status is refused (OpenMeter: 400).
    assert not allowed(State.PAID, PAYMENT_TRIGGERS["payment_uncollectible"], DEFAULT)

    # Every payment/status trigger from pending lands where OpenMeter puts it.
    outcomes = {
        trigger: fire(State.PAYMENT_PENDING, action, DEFAULT).target for trigger, action in PAYMENT_TRIGGERS.items()
    }
    assert outcomes == {
        "paid": State.PAID,
        "payment_failed": State.PAYMENT_FAILED,
        "payment_uncollectible": State.UNCOLLECTIBLE,
        "payment_overdue": State.OVERDUE,
        "action_required": State.PAYMENT_ACTION_REQUIRED,
        "void": State.VOIDED,
    }
    # Without hooks the same app runs through issuing and waits only for payment.
    plain = CustomInvoicingApp(make_app(AppType.CUSTOM_INVOICING, CustomInvoicingSettings()), Numbers())
    assert drive(State.DRAFT_CREATED, DEFAULT, lambda hook: run_app(plain, view(), hook)).state is (
        State.PAYMENT_PENDING
    )


def test_a_failed_app_call_moves_to_the_failed_state() -> None:
    def failing_issuing(hook: AppHook) -> HookOutcome:
        return HookOutcome(failed=hook is AppHook.SYNC_ISSUING)

    result = drive(State.DRAFT_CREATED, DEFAULT, failing_issuing)
    assert result.state is State.ISSUING_FAILED
    resumed = drive(result.state, DEFAULT, lambda hook: HookOutcome(), first=Action.RETRY)
    assert resumed.state is State.PAYMENT_PENDING

    def critical(hook: AppHook) -> HookOutcome:
        return HookOutcome(critical_issues=hook is AppHook.VALIDATE)

    invalid = drive(State.DRAFT_CREATED, DEFAULT, critical)
    assert invalid.state is State.DRAFT_INVALID
    # Retry re-validates (the issue may be fixed by then).
    assert allowed(invalid.state, Action.RETRY, invalid.conditions)


conditions_strategy = st.builds(
    Conditions,
    auto_advance=st.booleans(),
    collection_due=st.booleans(),
    draft_period_over=st.booleans(),
    critical_issues=st.booleans(),
    draft_sync_pending=st.booleans(),
    issuing_sync_pending=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    start=st.sampled_from([State.GATHERING, State.DRAFT_CREATED]),
    steps=st.lists(st.tuples(st.sampled_from(list(Action)), conditions_strategy), max_size=40),
)
def test_random_action_sequences_stay_in_defined_states(start: State, steps: list[tuple[Action, Conditions]]) -> None:
    state = start
    for action, conditions in steps:
        actions = available_actions(state, conditions)
        assert set(actions) == {a for a in API_ACTIONS if transition(state, a, conditions) is not None}
        assert all(isinstance(target, State) for target in actions.values())
        if allowed(state, action, conditions):
            state = fire(state, action, conditions).target
        else:
            with pytest.raises(InvalidTransitionError):
                fire(state, action, conditions)
        assert state in set(State)
        if state in FINAL_STATES:
            assert available_actions(state, conditions) == {}
