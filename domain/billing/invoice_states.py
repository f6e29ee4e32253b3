"""The invoice lifecycle as one explicit transition table.

Each row says: in this state (OpenMeter's `extendedStatus`; `status` is the part before the dot),
this action (the user's, the billing worker's, or the invoicing app's / integrator's), when these
guards hold, moves the invoice to that state; Tally does `step` and calls the invoicing app's `hook`
on the way. Everything else is derived from the table and nothing else: whether an action is allowed
(`allowed`), where it leads (`fire`), `statusDetails.availableActions` with their resulting states
(`available_actions`), whether the invoice may be edited (`immutable`), and how far the worker may
take it on its own (`settle`, `drive`).

The states and actions are OpenMeter's (openmeter/billing/stdinvoice.go, stdinvoicestate.go), with
these deliberate differences:
- Void is built: an issued invoice, or one whose payment is pending, failed, overdue, waiting for
  action or uncollectible, can be voided by the user (the app is told: hook `void_invoice`).
  OpenMeter's API answers 501. A paid invoice cannot be voided (that needs a credit note).
- OpenMeter's charge-booking states (`issuing.charge_booking`, `payment_processing.booking_*`)
  belong to its credits ("charges") layer, which Tally does not have: issuing goes from
  `issuing.syncing` straight to `issued`, a payment from `pending` straight to `paid`.
- The custom invoicing callbacks are actions of their own (`draft_synchronized`,
  `issuing_synchronized`), allowed only while the invoice waits for them, so an out-of-order call
  is refused instead of silently advancing something else.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from domain.errors import ValidationError


class InvoiceStatus(enum.StrEnum):
    """OpenMeter's `status`: the coarse state an API client filters by."""

    GATHERING = "gathering"
    DRAFT = "draft"
    ISSUING = "issuing"
    ISSUED = "issued"
    PAYMENT_PROCESSING = "payment_processing"
    OVERDUE = "overdue"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOIDED = "voided"
    # Deletion is not a status OpenMeter lists; deleted invoices are hidden from lists.
    DELETE = "delete"
    DELETED = "deleted"


class State(enum.StrEnum):
    """OpenMeter's `statusDetails.extendedStatus`."""

    GATHERING = "gathering"
    DRAFT_CREATED = "draft.created"
    DRAFT_WAITING_FOR_COLLECTION = "draft.waiting_for_collection"
    DRAFT_COLLECTING = "draft.collecting"
    DRAFT_UPDATING = "draft.updating"
    DRAFT_VALIDATING = "draft.validating"
    DRAFT_INVALID = "draft.invalid"
    DRAFT_SYNCING = "draft.syncing"
    DRAFT_SYNC_FAILED = "draft.sync_failed"
    DRAFT_MANUAL_APPROVAL_NEEDED = "draft.manual_approval_needed"
    DRAFT_WAITING_AUTO_APPROVAL = "draft.waiting_auto_approval"
    DRAFT_READY_TO_ISSUE = "draft.ready_to_issue"
    ISSUING_LINE_FINALIZATION = "issuing.line_finalization"
    ISSUING_LINE_FINALIZATION_FAILED = "issuing.line_finalization_failed"
    ISSUING_SYNCING = "issuing.syncing"
    ISSUING_FAILED = "issuing.failed"
    ISSUED = "issued"
    PAYMENT_PENDING = "payment_processing.pending"
    PAYMENT_AUTHORIZED = "payment_processing.authorized"
    PAYMENT_ACTION_REQUIRED = "payment_processing.action_required"
    PAYMENT_FAILED = "payment_processing.failed"
    OVERDUE = "overdue"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOIDED = "voided"
    DELETE_IN_PROGRESS = "delete.in_progress"
    DELETE_SYNCING = "delete.syncing"
    DELETE_FAILED = "delete.failed"
    DELETED = "deleted"

    @property
    def status(self) -> InvoiceStatus:
        return InvoiceStatus(self.value.split(".", 1)[0])


# States a step failed in: `statusDetails.failed`; `retry` (or delete) leads out of them.
FAILED_STATES: Final = frozenset(
    {
        State.DRAFT_INVALID,
        State.DRAFT_SYNC_FAILED,
        State.ISSUING_LINE_FINALIZATION_FAILED,
        State.ISSUING_FAILED,
        State.PAYMENT_FAILED,
        State.DELETE_FAILED,
    }
)


class Actor(enum.StrEnum):
    USER = "user"  # through the API
    WORKER = "worker"  # the billing worker, on its own
    APP = "app"  # the invoicing/payment app, or the integrator through custom invoicing's endpoints


class Action(enum.StrEnum):
    # The user's actions (the API's availableActions, plus line edits).
    ADVANCE = "advance"  # also the worker's step: "move on if nothing is in the way"
    APPROVE = "approve"
    RETRY = "retry"
    DELETE = "delete"
    VOID = "void"
    SNAPSHOT_QUANTITIES = "snapshot_quantities"
    UPDATE = "update"
    INVOICE = "invoice"  # on a gathering invoice: create a standard invoice from its due lines
    # The worker's: the step it was running (or the app call it made) failed.
    FAIL = "fail"
    # The invoicing app's, or the integrator's through POST /apps/custom-invoicing/{id}/...
    DRAFT_SYNCHRONIZED = "draft_synchronized"
    ISSUING_SYNCHRONIZED = "issuing_synchronized"
    PAYMENT_PAID = "payment.paid"
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_UNCOLLECTIBLE = "payment.uncollectible"
    PAYMENT_OVERDUE = "payment.overdue"  # also the worker's, when dueAt has passed
    PAYMENT_ACTION_REQUIRED = "payment.action_required"
    PAYMENT_VOID = "payment.void"  # the app voided it itself (nothing to tell the app)

    @property
    def actor(self) -> Actor:
        if self is Action.FAIL:
            return Actor.WORKER
        if self in _APP_ACTIONS:
            return Actor.APP
        return Actor.USER


_APP_ACTIONS: Final = frozenset(
    {
        Action.DRAFT_SYNCHRONIZED,
        Action.ISSUING_SYNCHRONIZED,
        Action.PAYMENT_PAID,
        Action.PAYMENT_AUTHORIZED,
        Action.PAYMENT_FAILED,
        Action.PAYMENT_UNCOLLECTIBLE,
        Action.PAYMENT_OVERDUE,
        Action.PAYMENT_ACTION_REQUIRED,
        Action.PAYMENT_VOID,
    }
)

# custom invoicing's payment/status `trigger` values -> actions.
PAYMENT_TRIGGERS: Final[Mapping[str, Action]] = {
    "paid": Action.PAYMENT_PAID,
    "payment_failed": Action.PAYMENT_FAILED,
    "payment_uncollectible": Action.PAYMENT_UNCOLLECTIBLE,
    "payment_overdue": Action.PAYMENT_OVERDUE,
    "action_required": Action.PAYMENT_ACTION_REQUIRED,
    "void": Action.PAYMENT_VOID,
}

# The actions statusDetails.availableActions reports (API names), in its order.
API_ACTIONS: Final[Mapping[Action, str]] = {
    Action.ADVANCE: "advance",
    Action.APPROVE: "approve",
    Action.DELETE: "delete",
    Action.RETRY: "retry",
    Action.SNAPSHOT_QUANTITIES: "snapshotQuantities",
    Action.VOID: "void",
    Action.INVOICE: "invoice",
}


class Guard(enum.StrEnum):
    COLLECTION_DUE = "collection_due"  # now >= collectionAt
    NO_CRITICAL_ISSUES = "no_critical_issues"
    AUTO_APPROVAL = "auto_approval"  # workflow.invoicing.autoAdvance
    MANUAL_APPROVAL = "manual_approval"  # not autoAdvance
    DRAFT_PERIOD_OVER = "draft_period_over"  # now >= draftUntil
    DRAFT_SYNCED = "draft_synced"  # the app is not waiting for draft/synchronized
    DRAFT_SYNC_PENDING = "draft_sync_pending"
    ISSUING_SYNCED = "issuing_synced"
    ISSUING_SYNC_PENDING = "issuing_sync_pending"


@dataclass(frozen=True, slots=True)
class Conditions:
    """What the guards read: the invoice's workflow, its clock and what its app is waiting for."""

    auto_advance: bool = True
    collection_due: bool = True
    draft_period_over: bool = True
    critical_issues: bool = False
    draft_sync_pending: bool = False
    issuing_sync_pending: bool = False

    def holds(self, guard: Guard) -> bool:
        match guard:
            case Guard.COLLECTION_DUE:
                return self.collection_due
            case Guard.NO_CRITICAL_ISSUES:
                return not self.critical_issues
            case Guard.AUTO_APPROVAL:
                return self.auto_advance
            case Guard.MANUAL_APPROVAL:
                return not self.auto_advance
            case Guard.DRAFT_PERIOD_OVER:
                return self.draft_period_over
            case Guard.DRAFT_SYNCED:
                return not self.draft_sync_pending
            case Guard.DRAFT_SYNC_PENDING:
                return self.draft_sync_pending
            case Guard.ISSUING_SYNCED:
                return not self.issuing_sync_pending
            case Guard.ISSUING_SYNC_PENDING:
                return self.issuing_sync_pending


class AppHook(enum.StrEnum):
    """The invoicing app's operation called on the way (domain/billing/apps/port.py)."""

    VALIDATE = "validate_invoice"
    SYNC_DRAFT = "sync_draft"
    SYNC_ISSUING = "sync_issuing"
    COLLECT_PAYMENT = "collect_payment"
    DELETE = "delete_invoice"
    VOID = "void_invoice"


class Step(enum.StrEnum):
    """Tally's own work on the way."""

    CREATE_FROM_GATHERING = "create_from_gathering"  # move the due lines to a new standard invoice
    CALCULATE = "calculate"  # rate the lines, totals
    SNAPSHOT_QUANTITIES = "snapshot_quantities"  # read usage as of now, then calculate
    FINALIZE_LINES = "finalize_lines"  # lines become immutable, invoice number reserved
    RELEASE_LINES = "release_lines"  # a deleted invoice's lines go back to the gathering invoice


@dataclass(frozen=True, slots=True)
class Transition:
    source: State
    action: Action
    target: State
    guards: tuple[Guard, ...] = ()
    hook: AppHook | None = None
    step: Step | None = None

    def permitted(self, conditions: Conditions) -> bool:
        return all(conditions.holds(g) for g in self.guards)


def _rows() -> tuple[Transition, ...]:
    S, A, G, H, St = State, Action, Guard, AppHook, Step
    rows: list[Transition] = []

    def row(
        source: State,
        action: Action,
        target: State,
        *guards: Guard,
        hook: AppHook | None = None,
        step: Step | None = None,
    ) -> None:
        rows.append(Transition(source, action, target, guards, hook, step))

    def editable_draft(source: State) -> None:
        row(source, A.UPDATE, S.DRAFT_UPDATING, step=St.CALCULATE)
        deletable(source)

    def deletable(source: State) -> None:
        row(source, A.DELETE, S.DELETE_IN_PROGRESS, step=St.RELEASE_LINES)

    row(S.GATHERING, A.INVOICE, S.DRAFT_CREATED, step=St.CREATE_FROM_GATHERING)

    row(S.DRAFT_CREATED, A.ADVANCE, S.DRAFT_WAITING_FOR_COLLECTION, step=St.CALCULATE)
    row(S.DRAFT_CREATED, A.FAIL, S.DRAFT_INVALID)
    editable_draft(S.DRAFT_CREATED)

    row(S.DRAFT_WAITING_FOR_COLLECTION, A.ADVANCE, S.DRAFT_COLLECTING, G.COLLECTION_DUE, step=St.SNAPSHOT_QUANTITIES)
    row(S.DRAFT_WAITING_FOR_COLLECTION, A.SNAPSHOT_QUANTITIES, S.DRAFT_COLLECTING, step=St.SNAPSHOT_QUANTITIES)
    editable_draft(S.DRAFT_WAITING_FOR_COLLECTION)

    row(S.DRAFT_COLLECTING, A.ADVANCE, S.DRAFT_VALIDATING, hook=H.VALIDATE, step=St.CALCULATE)
    row(S.DRAFT_COLLECTING, A.FAIL, S.DRAFT_INVALID)
    editable_draft(S.DRAFT_COLLECTING)

    row(S.DRAFT_UPDATING, A.ADVANCE, S.DRAFT_WAITING_FOR_COLLECTION, step=St.CALCULATE)
    row(S.DRAFT_UPDATING, A.FAIL, S.DRAFT_INVALID)
    deletable(S.DRAFT_UPDATING)

    row(S.DRAFT_VALIDATING, A.ADVANCE, S.DRAFT_SYNCING, G.NO_CRITICAL_ISSUES, hook=H.SYNC_DRAFT)
    row(S.DRAFT_VALIDATING, A.FAIL, S.DRAFT_INVALID)
    editable_draft(S.DRAFT_VALIDATING)

    row(S.DRAFT_INVALID, A.RETRY, S.DRAFT_VALIDATING, hook=H.VALIDATE, step=St.CALCULATE)
    editable_draft(S.DRAFT_INVALID)

    for action, waiting in ((A.ADVANCE, G.DRAFT_SYNCED), (A.DRAFT_SYNCHRONIZED, G.DRAFT_SYNC_PENDING)):
        row(S.DRAFT_SYNCING, action, S.DRAFT_MANUAL_APPROVAL_NEEDED, waiting, G.NO_CRITICAL_ISSUES, G.MANUAL_APPROVAL)
        row(S.DRAFT_SYNCING, action, S.DRAFT_WAITING_AUTO_APPROVAL, waiting, G.NO_CRITICAL_ISSUES, G.AUTO_APPROVAL)
    row(S.DRAFT_SYNCING, A.FAIL, S.DRAFT_SYNC_FAILED)
    deletable(S.DRAFT_SYNCING)

    row(S.DRAFT_SYNC_FAILED, A.RETRY, S.DRAFT_VALIDATING, hook=H.VALIDATE, step=St.CALCULATE)
    editable_draft(S.DRAFT_SYNC_FAILED)

    row(S.DRAFT_WAITING_AUTO_APPROVAL, A.ADVANCE, S.DRAFT_READY_TO_ISSUE, G.DRAFT_PERIOD_OVER, G.NO_CRITICAL_ISSUES)
    row(S.DRAFT_WAITING_AUTO_APPROVAL, A.APPROVE, S.DRAFT_READY_TO_ISSUE, G.NO_CRITICAL_ISSUES)
    editable_draft(S.DRAFT_WAITING_AUTO_APPROVAL)

    row(S.DRAFT_MANUAL_APPROVAL_NEEDED, A.APPROVE, S.DRAFT_READY_TO_ISSUE, G.NO_CRITICAL_ISSUES)
    editable_draft(S.DRAFT_MANUAL_APPROVAL_NEEDED)

    row(S.DRAFT_READY_TO_ISSUE, A.ADVANCE, S.ISSUING_LINE_FINALIZATION, step=St.FINALIZE_LINES)
    editable_draft(S.DRAFT_READY_TO_ISSUE)

    row(S.ISSUING_LINE_FINALIZATION, A.ADVANCE, S.ISSUING_SYNCING, hook=H.SYNC_ISSUING)
    row(S.ISSUING_LINE_FINALIZATION, A.FAIL, S.ISSUING_LINE_FINALIZATION_FAILED)
    deletable(S.ISSUING_LINE_FINALIZATION)

    row(S.ISSUING_LINE_FINALIZATION_FAILED, A.RETRY, S.ISSUING_LINE_FINALIZATION, step=St.FINALIZE_LINES)
    deletable(S.ISSUING_LINE_FINALIZATION_FAILED)

    row(S.ISSUING_SYNCING, A.ADVANCE, S.ISSUED, G.ISSUING_SYNCED)
    row(S.ISSUING_SYNCING, A.ISSUING_SYNCHRONIZED, S.ISSUED, G.ISSUING_SYNC_PENDING)
    row(S.ISSUING_SYNCING, A.FAIL, S.ISSUING_FAILED)
    deletable(S.ISSUING_SYNCING)

    row(S.ISSUING_FAILED, A.RETRY, S.ISSUING_SYNCING, hook=H.SYNC_ISSUING)
    deletable(S.ISSUING_FAILED)

    row(S.ISSUED, A.ADVANCE, S.PAYMENT_PENDING, hook=H.COLLECT_PAYMENT)
    row(S.ISSUED, A.VOID, S.VOIDED, hook=H.VOID)

    # Payment outcomes, as reported by the payment app (or the integrator), from every state a
    # payment can still change in. A retry asks the app to collect again.
    payment_outcomes = {
        A.PAYMENT_PAID: S.PAID,
        A.PAYMENT_AUTHORIZED: S.PAYMENT_AUTHORIZED,
        A.PAYMENT_FAILED: S.PAYMENT_FAILED,
        A.PAYMENT_UNCOLLECTIBLE: S.UNCOLLECTIBLE,
        A.PAYMENT_OVERDUE: S.OVERDUE,
        A.PAYMENT_ACTION_REQUIRED: S.PAYMENT_ACTION_REQUIRED,
        A.PAYMENT_VOID: S.VOIDED,
    }
    open_payment_states = (
        S.PAYMENT_PENDING,
        S.PAYMENT_AUTHORIZED,
        S.PAYMENT_ACTION_REQUIRED,
        S.PAYMENT_FAILED,
        S.OVERDUE,
    )
    for source in open_payment_states:
        for action, target in payment_outcomes.items():
            if target is not source:
                row(source, action, target)
        if source not in (S.PAYMENT_PENDING, S.PAYMENT_AUTHORIZED):
            row(source, A.RETRY, S.PAYMENT_PENDING, hook=H.COLLECT_PAYMENT)
        row(source, A.VOID, S.VOIDED, hook=H.VOID)
    # Written off, yet a late payment may still arrive; or it is voided after all.
    row(S.UNCOLLECTIBLE, A.PAYMENT_PAID, S.PAID)
    row(S.UNCOLLECTIBLE, A.PAYMENT_AUTHORIZED, S.PAYMENT_AUTHORIZED)
    row(S.UNCOLLECTIBLE, A.PAYMENT_VOID, S.VOIDED)
    row(S.UNCOLLECTIBLE, A.VOID, S.VOIDED, hook=H.VOID)

    row(S.DELETE_IN_PROGRESS, A.ADVANCE, S.DELETE_SYNCING, hook=H.DELETE)
    row(S.DELETE_IN_PROGRESS, A.FAIL, S.DELETE_FAILED)
    row(S.DELETE_SYNCING, A.ADVANCE, S.DELETED)
    row(S.DELETE_SYNCING, A.FAIL, S.DELETE_FAILED)
    # Only deleted again (OpenMeter's delete.failed permits delete alone, not retry).
    row(S.DELETE_FAILED, A.DELETE, S.DELETE_IN_PROGRESS, step=St.RELEASE_LINES)
    # paid, voided and deleted are final: no row leaves them.
    return tuple(rows)


TABLE: Final[tuple[Transition, ...]] = _rows()

_BY_SOURCE_ACTION: Final[Mapping[tuple[State, Action], tuple[Transition, ...]]] = {
    key: tuple(t for t in TABLE if (t.source, t.action) == key) for key in {(t.source, t.action) for t in TABLE}
}

FINAL_STATES: Final = frozenset(s for s in State if not any(t.source is s for t in TABLE))


class InvalidTransitionError(ValidationError):
    """The action is not allowed in the invoice's state: 400 with OpenMeter's code for it (its
    AdvanceInvoice refuses with invoice_cannot_advance, every other action with
    invoice_action_not_available)."""

    def __init__(self, state: State, action: Action) -> None:
        super().__init__(
            [],
            message=f"cannot {action.value.replace('_', ' ')} an invoice in state {state.value}",
            code="invoice_cannot_advance" if action is Action.ADVANCE else "invoice_action_not_available",
        )
        self.state = state
        self.action = action


def transition(state: State, action: Action, conditions: Conditions) -> Transition | None:
    """The row that applies, or None. The table's guards make at most one row apply (tested)."""
    for row in _BY_SOURCE_ACTION.get((state, action), ()):
        if row.permitted(conditions):
            return row
    return None


def allowed(state: State, action: Action, conditions: Conditions) -> bool:
    return transition(state, action, conditions) is not None


def fire(state: State, action: Action, conditions: Conditions) -> Transition:
    row = transition(state, action, conditions)
    if row is None:
        raise InvalidTransitionError(state, action)
    return row


def settle(state: State, conditions: Conditions) -> list[Transition]:
    """The worker's advances from `state` until the invoice must wait (for time, the user or the app).

    Assumes no app call waits or fails; `drive` is the same walk with the app's answers.
    """
    path: list[Transition] = []
    while (row := transition(state, Action.ADVANCE, conditions)) is not None:
        path.append(row)
        state = row.target
    return path


def resulting_state(state: State, action: Action, conditions: Conditions) -> State | None:
    """Where the action leaves the invoice once the worker has advanced it as far as it can.

    Past the action itself the invoice's current validation issues do not count, as OpenMeter
    works out a resulting state with them cleared (calculateAvailableActionDetails): the steps on
    the way validate the invoice again, and a retry starts by doing so."""
    row = transition(state, action, conditions)
    if row is None:
        return None
    path = settle(row.target, dataclasses.replace(conditions, critical_issues=False))
    return path[-1].target if path else row.target


def available_actions(state: State, conditions: Conditions) -> dict[Action, State]:
    """statusDetails.availableActions: each user action the table allows now, with its resulting state."""
    out: dict[Action, State] = {}
    for action in API_ACTIONS:
        target = resulting_state(state, action, conditions)
        if target is not None:
            out[action] = target
    return out


def immutable(state: State, conditions: Conditions) -> bool:
    """statusDetails.immutable: the invoice's lines can no longer be edited. A gathering invoice
    takes new pending lines until it is invoiced: never immutable (as OpenMeter shows it)."""
    if state is State.GATHERING:
        return False
    return not allowed(state, Action.UPDATE, conditions)


def failed(state: State) -> bool:
    return state in FAILED_STATES


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """What an app call answered, for `drive`: done, waiting for a callback, failed, or a payment result."""

    waiting: bool = False
    failed: bool = False
    critical_issues: bool = False
    trigger: Action | None = None


@dataclass(frozen=True, slots=True)
class Drive:
    state: State
    conditions: Conditions
    path: tuple[Transition, ...] = field(default_factory=tuple)


def drive(
    state: State,
    conditions: Conditions,
    call: Callable[[AppHook], HookOutcome],
    first: Action = Action.ADVANCE,
    max_steps: int = 100,
) -> Drive:
    """Fire `first`, then advance as the worker does, calling the app's hooks on the way.

    A failed call fires FAIL from the state it was made for; a waiting call sets the matching
    `*_sync_pending` condition (the invoice rests until the callback); a payment result is fired.
    The invoice helper's worker does exactly this, with one transaction per row.
    """
    path: list[Transition] = []
    action: Action | None = first
    for _ in range(max_steps):
        if action is None:
            break
        row = fire(state, action, conditions)
        path.append(row)
        state = row.target
        action = Action.ADVANCE
        if row.hook is not None:
            outcome = call(row.hook)
            if outcome.critical_issues:
                conditions = dataclasses.replace(conditions, critical_issues=True)
            if outcome.failed or outcome.critical_issues:
                action = Action.FAIL if allowed(state, Action.FAIL, conditions) else None
            elif outcome.waiting and row.hook is AppHook.SYNC_DRAFT:
                conditions = dataclasses.replace(conditions, draft_sync_pending=True)
            elif outcome.waiting and row.hook is AppHook.SYNC_ISSUING:
                conditions = dataclasses.replace(conditions, issuing_sync_pending=True)
            elif outcome.trigger is not None:
                action = outcome.trigger
        if action is Action.ADVANCE and not allowed(state, Action.ADVANCE, conditions):
            action = None
    return Drive(state, conditions, tuple(path))


def states_with(action: Action) -> Iterable[State]:
    return sorted({t.source for t in TABLE if t.action is action}, key=lambda s: s.value)
