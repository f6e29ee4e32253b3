"""EntitlementService: proto <-> domain for the v1 (subject) and v2 (customer) entitlement APIs."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from google.protobuf import empty_pb2, json_format

from domain.customers.models import Customer
from domain.entitlements.models import (
    Entitlement,
    EntitlementInput,
    EntitlementValue,
    GrantInput,
    HistoryInput,
    ListEntitlementsInput,
    ListGrantsInput,
    RecurrenceInput,
    ResetInput,
    StoredGrant,
    interval_name,
)
from domain.entitlements.recurrence import add_date_overflowing
from domain.entitlements.service import EntitlementService, History, subject_key_for
from domain.errors import NotFoundError
from domain.pagination import PageMode, Unpaged
from server.context import RequestContext
from server.convert import optional_str, set_timestamp, struct_from, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from tally.v1 import entitlements_pb2 as pb
from tally.v1 import entitlements_pb2_grpc


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _recurrence_in(message: pb.RecurringPeriodInput) -> RecurrenceInput:
    return RecurrenceInput(interval=message.interval, anchor=timestamp_or_none(message, "anchor"))


def grant_input(message: pb.GrantCreateInput, v2: bool) -> GrantInput:
    return GrantInput(
        amount=message.amount,
        effective_at=timestamp_or_none(message, "effective_at"),
        v2=v2,
        priority=_opt(message, "priority"),
        expiration_duration=message.expiration.duration if message.HasField("expiration") else None,
        expiration_count=message.expiration.count if message.HasField("expiration") else None,
        max_rollover_amount=_opt(message, "max_rollover_amount"),
        min_rollover_amount=_opt(message, "min_rollover_amount"),
        metadata=dict(message.metadata),
        annotations=json_format.MessageToDict(message.annotations) if message.HasField("annotations") else {},
        recurrence=_recurrence_in(message.recurrence) if message.HasField("recurrence") else None,
    )


def entitlement_input(message: pb.EntitlementCreateInput, v2: bool) -> EntitlementInput:
    issue = _opt(message, "issue_after_reset")
    priority = _opt(message, "issue_after_reset_priority")
    if message.HasField("issue"):
        issue = message.issue.amount
        priority = _opt(message.issue, "priority")
    return EntitlementInput(
        type=message.type,
        feature_key=_opt(message, "feature_key"),
        feature_id=_opt(message, "feature_id"),
        metadata=dict(message.metadata),
        usage_period=_recurrence_in(message.usage_period) if message.HasField("usage_period") else None,
        measure_usage_from=_opt(message, "measure_usage_from"),
        is_soft_limit=_opt(message, "is_soft_limit"),
        issue_after_reset=issue,
        issue_after_reset_priority=priority,
        preserve_overage_at_reset=_opt(message, "preserve_overage_at_reset"),
        config=_opt(message, "config"),
        grants=[grant_input(g, v2=True) for g in message.grants],
        v2=v2,
    )


def entitlement_to_proto(
    e: Entitlement, customer: Customer, v2: bool, now: datetime, subject: str | None = None
) -> pb.Entitlement:
    message = pb.Entitlement(
        type=e.type.value, id=e.id, feature_key=e.feature_key, feature_id=e.feature_id, metadata=dict(e.metadata)
    )
    if v2:
        message.customer_id = customer.id
        if customer.key is not None:
            message.customer_key = customer.key
    else:
        message.subject_key = subject_key_for(customer, subject)
    if e.annotations:
        message.annotations.CopyFrom(struct_from(dict(e.annotations)))
    set_timestamp(message.created_at, e.created_at)
    set_timestamp(message.updated_at, e.updated_at)
    set_timestamp(message.deleted_at, e.deleted_at)
    set_timestamp(message.active_from, e.active_from)
    set_timestamp(message.active_to, e.active_to)
    current = e.current_interval_and_anchor()
    if current is not None:
        interval, anchor = current
        message.usage_period.interval = interval_name(interval)
        message.usage_period.interval_iso = interval.iso()
        set_timestamp(message.usage_period.anchor, anchor)
        period = e.current_usage_period(now)
        if period is not None:
            set_timestamp(message.current_usage_period.__getattribute__("from"), period.start)
            set_timestamp(message.current_usage_period.to, period.end)
    if e.metered:
        message.is_soft_limit = e.is_soft_limit
        message.preserve_overage_at_reset = e.preserve_overage_at_reset
        if not v2:
            message.is_unlimited = False
        set_timestamp(message.measure_usage_from, e.measure_usage_from)
        set_timestamp(message.last_reset, e.last_reset(now))
        # OpenMeter stores an absent issueAfterReset as 0 and shows it; it shows a priority only
        # when one was given (the issued grant burns at 1 otherwise).
        amount = float(e.issue_after_reset) if e.issue_after_reset is not None else 0.0
        message.issue_after_reset = amount
        if v2:
            message.issue.amount = amount
        if e.issue_after_reset is not None and e.issue_after_reset_priority is not None:
            message.issue_after_reset_priority = e.issue_after_reset_priority
            if v2:
                message.issue.priority = e.issue_after_reset_priority
    if e.config is not None:
        message.config = e.config
    return message


def grant_to_proto(g: StoredGrant, v2: bool, now: datetime) -> pb.Grant:
    message = pb.Grant(
        id=g.id,
        entitlement_id=g.entitlement_id,
        amount=float(g.amount),
        priority=g.priority,
        max_rollover_amount=float(g.max_rollover_amount),
        min_rollover_amount=float(g.min_rollover_amount),
        metadata=dict(g.metadata),
    )
    if g.expiration is not None:
        message.expiration.duration = g.expiration.duration.value
        message.expiration.count = g.expiration.count
    elif not v2:
        # v1 requires an expiration and an expiresAt; OpenMeter's MapEntitlementGrantToAPI shows a grant
        # without one as expiring in 100 years, counted from now.
        message.expiration.duration = "YEAR"
        message.expiration.count = 100
        set_timestamp(message.expires_at, add_date_overflowing(now, years=100))
    if g.annotations:
        message.annotations.CopyFrom(struct_from(dict(g.annotations)))
    if g.recurrence is not None:
        message.recurrence.interval = interval_name(g.recurrence.interval)
        message.recurrence.interval_iso = g.recurrence.interval.iso()
        set_timestamp(message.recurrence.anchor, g.recurrence.anchor)
        set_timestamp(message.next_recurrence, g.next_recurrence(now))
    set_timestamp(message.effective_at, g.effective_at)
    set_timestamp(message.expires_at, g.expires_at)
    set_timestamp(message.voided_at, g.voided_at)
    set_timestamp(message.created_at, g.created_at)
    set_timestamp(message.updated_at, g.updated_at)
    set_timestamp(message.deleted_at, g.deleted_at)
    return message


def value_to_proto(value: EntitlementValue, v2: bool) -> pb.EntitlementValue:
    message = pb.EntitlementValue(has_access=value.has_access)
    for name in ("balance", "usage", "overage", "total_available_grant_amount"):
        number = getattr(value, name)
        if number is not None:
            setattr(message, name, float(number))
    if value.config is not None:
        message.config = value.config
    if v2 and value.grant_balances is not None:
        message.grant_balances.CopyFrom(struct_from({k: float(v) for k, v in value.grant_balances.items()}))
    return message


def history_to_proto(history: History) -> pb.EntitlementHistory:
    message = pb.EntitlementHistory()
    for w in history.windows:
        item = message.windowed_history.add(usage=float(w.usage), balance_at_start=float(w.balance_at_start))
        set_timestamp(item.period.__getattribute__("from"), w.start)
        set_timestamp(item.period.to, w.end)
    for s in history.segments:
        segment = message.burndown_history.add(
            usage=float(s.usage),
            overage=float(s.overage),
            balance_at_start=float(s.balance_at_start),
            balance_at_end=float(s.balance_at_end),
            grant_balances_at_start={k: float(v) for k, v in s.balances_at_start.items()},
            grant_balances_at_end={k: float(v) for k, v in s.balances_at_end.items()},
            grant_usages=[pb.GrantUsageRecord(grant_id=u.grant_id, usage=float(u.usage)) for u in s.grant_usages],
        )
        set_timestamp(segment.period.__getattribute__("from"), s.start)
        set_timestamp(segment.period.to, s.end)
    return message


def _history_input(request: Any) -> HistoryInput:
    return HistoryInput(
        window_size=request.window_size,
        from_=timestamp_or_none(request, "from"),
        to=timestamp_or_none(request, "to"),
        window_time_zone=optional_str(request, "window_time_zone"),
    )


def _reset_input(request: Any) -> ResetInput:
    return ResetInput(
        effective_at=timestamp_or_none(request, "effective_at"),
        retain_anchor=bool(_opt(request, "retain_anchor")),
        preserve_overage=_opt(request, "preserve_overage"),
    )


def _grants_input(request: Any, unpaged: Unpaged) -> ListGrantsInput:
    return ListGrantsInput(
        unpaged=unpaged,
        include_deleted=request.include_deleted,
        page=_opt(request, "page"),
        page_size=_opt(request, "page_size"),
        limit=_opt(request, "limit"),
        offset=_opt(request, "offset"),
        order=_opt(request, "order"),
        order_by=_opt(request, "order_by"),
    )


def _entitlements_input(request: pb.ListEntitlementsRequest, unpaged: Unpaged) -> ListEntitlementsInput:
    return ListEntitlementsInput(
        unpaged=unpaged,
        features=tuple(request.feature),
        types=tuple(request.entitlement_type),
        exclude_inactive=request.exclude_inactive,
        page=_opt(request, "page"),
        page_size=_opt(request, "page_size"),
        limit=_opt(request, "limit"),
        offset=_opt(request, "offset"),
        order=_opt(request, "order"),
        order_by=_opt(request, "order_by"),
    )


def _paged(response: Any, mode: PageMode, total: int, page: int, size: int, always: bool) -> bool:
    """Fills the paginated fields; returns True when REST should answer a plain array instead."""
    if mode is PageMode.PAGE:
        response.total_count, response.page, response.page_size = total, page, size
        return False
    if always:
        # limit/offset: the count is real, the page fields are zero (OpenMeter's behaviour).
        response.total_count, response.page, response.page_size = total, 0, 0
        return False
    return True


class EntitlementServicer(entitlements_pb2_grpc.EntitlementServiceServicer):
    def __init__(self, entitlements: EntitlementService, request: RequestContext) -> None:
        self._svc = entitlements
        self._request = request

    def _ns(self, context: Ctx) -> str:
        return self._request.namespace(context)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    async def _customer(self, context: Ctx, id_or_key: str) -> Customer:
        return await self._svc.customer(self._ns(context), id_or_key)

    async def _subject(self, context: Ctx, subject: str) -> Customer:
        return await self._svc.subject_customer(self._ns(context), subject)

    async def _customers_of(self, context: Ctx, entitlements: list[Entitlement]) -> dict[str, Customer]:
        """The customers of a page of entitlements, in one read (a page may hold 100 customers)."""
        ids = [e.customer_id for e in entitlements]
        found = await self._svc.customers.get_many(self._ns(context), ids)
        missing = next((customer_id for customer_id in ids if customer_id not in found), None)
        if missing is not None:
            raise NotFoundError("customer", missing)
        return found

    # --- v2 ---

    async def CreateCustomerEntitlement(
        self, request: pb.CreateCustomerEntitlementRequest, context: Ctx
    ) -> pb.Entitlement:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.create(self._ns(context), customer, entitlement_input(request.entitlement, v2=True))
        await rest_hints(context, http_code=201)
        return entitlement_to_proto(e, customer, True, self._now())

    async def ListCustomerEntitlements(
        self, request: pb.ListCustomerEntitlementsRequest, context: Ctx
    ) -> pb.ListEntitlementsResponse:
        customer = await self._customer(context, request.customer_id_or_key)
        data = ListEntitlementsInput(
            unpaged=Unpaged.FIRST_PAGE,
            include_deleted=request.include_deleted,
            page=_opt(request, "page"),
            page_size=_opt(request, "page_size"),
            order=_opt(request, "order"),
            order_by=_opt(request, "order_by"),
        )
        items, total, mode, page, size = await self._svc.list_entitlements(self._ns(context), data, [customer.id])
        now = self._now()
        response = pb.ListEntitlementsResponse(items=[entitlement_to_proto(e, customer, True, now) for e in items])
        _paged(response, mode, total, page, size, always=True)
        return response

    async def GetCustomerEntitlement(self, request: pb.CustomerEntitlementRequest, context: Ctx) -> pb.Entitlement:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key)
        return entitlement_to_proto(e, customer, True, self._now())

    async def DeleteCustomerEntitlement(self, request: pb.CustomerEntitlementRequest, context: Ctx) -> empty_pb2.Empty:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key)
        await self._svc.delete(self._ns(context), e)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def OverrideCustomerEntitlement(
        self, request: pb.OverrideCustomerEntitlementRequest, context: Ctx
    ) -> pb.Entitlement:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.override(
            self._ns(context),
            customer,
            request.entitlement_id_or_feature_key,
            entitlement_input(request.entitlement, v2=True),
        )
        await rest_hints(context, http_code=201)
        return entitlement_to_proto(e, customer, True, self._now())

    async def ListCustomerEntitlementGrants(
        self, request: pb.ListCustomerEntitlementGrantsRequest, context: Ctx
    ) -> pb.ListGrantsResponse:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key)
        items, total, mode, page, size = await self._svc.grants(
            self._ns(context), [e], _grants_input(request, Unpaged.FIRST_PAGE)
        )
        now = self._now()
        response = pb.ListGrantsResponse(items=[grant_to_proto(g, True, now) for g in items])
        _paged(response, mode, total, page, size, always=True)
        return response

    async def CreateCustomerEntitlementGrant(
        self, request: pb.CreateCustomerEntitlementGrantRequest, context: Ctx
    ) -> pb.Grant:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key)
        g = await self._svc.create_grant(self._ns(context), e, grant_input(request.grant, v2=True))
        await rest_hints(context, http_code=201)
        return grant_to_proto(g, True, self._now())

    async def GetCustomerEntitlementValue(
        self, request: pb.GetCustomerEntitlementValueRequest, context: Ctx
    ) -> pb.EntitlementValue:
        customer = await self._customer(context, request.customer_id_or_key)
        at = timestamp_or_none(request, "time")
        try:
            e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key, at)
        except NotFoundError:
            # OpenMeter's customer-scoped value: no entitlement of that key active then is no access.
            return pb.EntitlementValue(has_access=False)
        value = await self._svc.value(self._ns(context), e, at, customer)
        return value_to_proto(value, v2=True)

    async def GetCustomerEntitlementHistory(
        self, request: pb.GetCustomerEntitlementHistoryRequest, context: Ctx
    ) -> pb.EntitlementHistory:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key)
        return history_to_proto(await self._svc.history(self._ns(context), e, _history_input(request)))

    async def ResetCustomerEntitlementUsage(
        self, request: pb.ResetCustomerEntitlementUsageRequest, context: Ctx
    ) -> empty_pb2.Empty:
        customer = await self._customer(context, request.customer_id_or_key)
        e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key)
        await self._svc.reset(self._ns(context), e, _reset_input(request))
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def GetCustomerAccess(self, request: pb.GetCustomerAccessRequest, context: Ctx) -> pb.CustomerAccess:
        customer = await self._customer(context, request.customer_id_or_key)
        access = await self._svc.access(self._ns(context), customer)
        response = pb.CustomerAccess()
        for feature_key, (e, value) in access.items():
            entry = response.entitlements[feature_key]
            entry.id = e.id
            entry.has_access = value.has_access
            for name in ("balance", "usage", "overage", "total_available_grant_amount"):
                number = getattr(value, name)
                if number is not None:
                    setattr(entry, name, float(number))
            if value.config is not None:
                entry.config = value.config
        return response

    async def _list_entitlements(
        self, request: pb.ListEntitlementsRequest, context: Ctx, v2: bool
    ) -> pb.ListEntitlementsResponse:
        ns = self._ns(context)
        customer_ids: list[str] = []
        if v2:
            tokens = [*request.customer_ids, *request.customer_keys]
            found = await self._svc.customers.resolve(ns, tokens)
            customer_ids = [c.id for c in found.values()]
            if tokens and not customer_ids:
                return pb.ListEntitlementsResponse(total_count=0, page=1, page_size=100)
        else:
            for subject in request.subject:
                customer = await self._svc.customers.by_subject(ns, subject)
                if customer is not None:
                    customer_ids.append(customer.id)
            if request.subject and not customer_ids:
                response = pb.ListEntitlementsResponse()
                await rest_hints(context, shape="array")
                return response
        items, total, mode, page, size = await self._svc.list_entitlements(
            ns, _entitlements_input(request, Unpaged.FIRST_PAGE if v2 else Unpaged.FIRST_100), customer_ids
        )
        customers = await self._customers_of(context, items)
        now = self._now()
        response = pb.ListEntitlementsResponse(
            items=[entitlement_to_proto(e, customers[e.customer_id], v2, now) for e in items]
        )
        if _paged(response, mode, total, page, size, always=v2):
            await rest_hints(context, shape="array")
        return response

    async def ListEntitlementsV2(
        self, request: pb.ListEntitlementsRequest, context: Ctx
    ) -> pb.ListEntitlementsResponse:
        return await self._list_entitlements(request, context, v2=True)

    async def GetEntitlementV2(self, request: pb.GetEntitlementByIdRequest, context: Ctx) -> pb.Entitlement:
        e = await self._svc.get(self._ns(context), request.entitlement_id)
        customer = await self._svc.customers.get(self._ns(context), e.customer_id)
        return entitlement_to_proto(e, customer, True, self._now())

    async def _list_grants(self, request: pb.ListGrantsRequest, context: Ctx, v2: bool) -> pb.ListGrantsResponse:
        ns = self._ns(context)
        customer_ids: list[str] | None = None
        if v2 and request.customer:
            customer_ids = [c.id for c in (await self._svc.customers.resolve(ns, list(request.customer))).values()]
        elif not v2 and request.subject:
            customer_ids = []
            for subject in request.subject:
                customer = await self._svc.customers.by_subject(ns, subject)
                if customer is not None:
                    customer_ids.append(customer.id)
        entitlements: list[Entitlement] = []
        if customer_ids is None or customer_ids:
            data = ListEntitlementsInput(features=tuple(request.feature), include_deleted=True)
            entitlements, _, _, _, _ = await self._svc.list_entitlements(ns, data, customer_ids or [])
        # Both versions answer the first 100 (as limit/offset) to a request without paging parameters.
        query = dataclasses.replace(_grants_input(request, Unpaged.FIRST_100), default_order_by="effectiveAt")
        items, total, mode, page, size = await self._svc.grants(ns, entitlements, query)
        now = self._now()
        response = pb.ListGrantsResponse(items=[grant_to_proto(g, v2, now) for g in items])
        if _paged(response, mode, total, page, size, always=v2):
            await rest_hints(context, shape="array")
        return response

    async def ListGrantsV2(self, request: pb.ListGrantsRequest, context: Ctx) -> pb.ListGrantsResponse:
        return await self._list_grants(request, context, v2=True)

    # --- v1 ---

    async def CreateSubjectEntitlement(
        self, request: pb.CreateSubjectEntitlementRequest, context: Ctx
    ) -> pb.Entitlement:
        customer = await self._subject(context, request.subject_id_or_key)
        e = await self._svc.create(self._ns(context), customer, entitlement_input(request.entitlement, v2=False))
        await rest_hints(context, http_code=201)
        return entitlement_to_proto(e, customer, False, self._now(), request.subject_id_or_key)

    async def ListSubjectEntitlements(
        self, request: pb.ListSubjectEntitlementsRequest, context: Ctx
    ) -> pb.ListEntitlementsResponse:
        customer = await self._subject(context, request.subject_id_or_key)
        data = ListEntitlementsInput(include_deleted=request.include_deleted)
        items, _, _, _, _ = await self._svc.list_entitlements(self._ns(context), data, [customer.id])
        now = self._now()
        await rest_hints(context, shape="array")
        return pb.ListEntitlementsResponse(
            items=[entitlement_to_proto(e, customer, False, now, request.subject_id_or_key) for e in items]
        )

    async def _subject_entitlement(self, context: Ctx, subject: str, id_or_key: str) -> tuple[Customer, Entitlement]:
        customer = await self._subject(context, subject)
        return customer, await self._svc.for_customer(self._ns(context), customer, id_or_key)

    async def GetSubjectEntitlement(self, request: pb.SubjectEntitlementRequest, context: Ctx) -> pb.Entitlement:
        customer, e = await self._subject_entitlement(context, request.subject_id_or_key, request.entitlement_id)
        return entitlement_to_proto(e, customer, False, self._now(), request.subject_id_or_key)

    async def DeleteSubjectEntitlement(self, request: pb.SubjectEntitlementRequest, context: Ctx) -> empty_pb2.Empty:
        _, e = await self._subject_entitlement(context, request.subject_id_or_key, request.entitlement_id)
        await self._svc.delete(self._ns(context), e)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def OverrideSubjectEntitlement(
        self, request: pb.OverrideSubjectEntitlementRequest, context: Ctx
    ) -> pb.Entitlement:
        customer = await self._subject(context, request.subject_id_or_key)
        e = await self._svc.override(
            self._ns(context),
            customer,
            request.entitlement_id_or_feature_key,
            entitlement_input(request.entitlement, v2=False),
        )
        await rest_hints(context, http_code=201)
        return entitlement_to_proto(e, customer, False, self._now(), request.subject_id_or_key)

    async def ListSubjectEntitlementGrants(
        self, request: pb.ListSubjectEntitlementGrantsRequest, context: Ctx
    ) -> pb.ListGrantsResponse:
        _, e = await self._subject_entitlement(
            context, request.subject_id_or_key, request.entitlement_id_or_feature_key
        )
        data = ListGrantsInput(include_deleted=request.include_deleted, order_by=_opt(request, "order_by"))
        items, _, _, _, _ = await self._svc.grants(self._ns(context), [e], data)
        now = self._now()
        await rest_hints(context, shape="array")
        return pb.ListGrantsResponse(items=[grant_to_proto(g, False, now) for g in items])

    async def CreateSubjectEntitlementGrant(
        self, request: pb.CreateSubjectEntitlementGrantRequest, context: Ctx
    ) -> pb.Grant:
        _, e = await self._subject_entitlement(
            context, request.subject_id_or_key, request.entitlement_id_or_feature_key
        )
        g = await self._svc.create_grant(self._ns(context), e, grant_input(request.grant, v2=False))
        await rest_hints(context, http_code=201)
        return grant_to_proto(g, False, self._now())

    async def GetSubjectEntitlementValue(
        self, request: pb.GetSubjectEntitlementValueRequest, context: Ctx
    ) -> pb.EntitlementValue:
        at = timestamp_or_none(request, "time")
        # The v1 subject-scoped value answers 404 when no entitlement of the key is active at `at`.
        customer = await self._subject(context, request.subject_id_or_key)
        e = await self._svc.for_customer(self._ns(context), customer, request.entitlement_id_or_feature_key, at)
        value = await self._svc.value(self._ns(context), e, at, customer)
        return value_to_proto(value, v2=False)

    async def GetSubjectEntitlementHistory(
        self, request: pb.GetSubjectEntitlementHistoryRequest, context: Ctx
    ) -> pb.EntitlementHistory:
        _, e = await self._subject_entitlement(context, request.subject_id_or_key, request.entitlement_id)
        return history_to_proto(await self._svc.history(self._ns(context), e, _history_input(request)))

    async def ResetSubjectEntitlementUsage(
        self, request: pb.ResetSubjectEntitlementUsageRequest, context: Ctx
    ) -> empty_pb2.Empty:
        _, e = await self._subject_entitlement(context, request.subject_id_or_key, request.entitlement_id)
        await self._svc.reset(self._ns(context), e, _reset_input(request))
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def ListEntitlements(self, request: pb.ListEntitlementsRequest, context: Ctx) -> pb.ListEntitlementsResponse:
        return await self._list_entitlements(request, context, v2=False)

    async def GetEntitlement(self, request: pb.GetEntitlementByIdRequest, context: Ctx) -> pb.Entitlement:
        e = await self._svc.get(self._ns(context), request.entitlement_id)
        customer = await self._svc.customers.get(self._ns(context), e.customer_id)
        return entitlement_to_proto(e, customer, False, self._now())

    async def ListGrants(self, request: pb.ListGrantsRequest, context: Ctx) -> pb.ListGrantsResponse:
        return await self._list_grants(request, context, v2=False)

    async def VoidGrant(self, request: pb.VoidGrantRequest, context: Ctx) -> empty_pb2.Empty:
        await self._svc.void_grant(self._ns(context), request.grant_id, timestamp_or_none(request, "at"))
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()
