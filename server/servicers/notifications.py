"""NotificationService: proto <-> domain for channels, rules, events, resends and the event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from google.protobuf import empty_pb2

from domain.notifications.models import (
    Channel,
    ChannelInput,
    ChannelType,
    DeliveryStatus,
    Event,
    ListChannelsInput,
    ListEventsInput,
    ListRulesInput,
    Rule,
    RuleInput,
    ThresholdInput,
)
from domain.notifications.service import NotificationService
from server.context import RequestContext
from server.convert import optional_str, set_timestamp, struct_from, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from tally.v1 import notifications_pb2 as pb
from tally.v1 import notifications_pb2_grpc

# How long the event stream sleeps between looks when nothing wakes it.
STREAM_POLL_SECONDS = 1.0


def channel_to_proto(channel: Channel) -> pb.NotificationChannel:
    message = pb.NotificationChannel(
        id=channel.id,
        type=channel.type.value,
        name=channel.name,
        disabled=channel.disabled,
        url=channel.url,
        custom_headers=channel.custom_headers,
        signing_secret=channel.signing_secret,
        metadata=channel.metadata,
    )
    if channel.annotations:
        message.annotations.CopyFrom(struct_from(channel.annotations))
    set_timestamp(message.created_at, channel.created_at)
    set_timestamp(message.updated_at, channel.updated_at)
    set_timestamp(message.deleted_at, channel.deleted_at)
    return message


def rule_to_proto(rule: Rule) -> pb.NotificationRule:
    message = pb.NotificationRule(
        id=rule.id,
        type=rule.type.value,
        name=rule.name,
        disabled=rule.disabled,
        channels=[pb.NotificationChannelMeta(id=c, type=ChannelType.WEBHOOK.value) for c in rule.channel_ids],
        thresholds=[
            pb.NotificationRuleBalanceThresholdValue(value=float(t.value), type=t.type.value) for t in rule.thresholds
        ],
        features=[pb.NotificationFeatureMeta(id=f.id, key=f.key) for f in rule.features],
        metadata=rule.metadata,
    )
    if rule.annotations:
        message.annotations.CopyFrom(struct_from(rule.annotations))
    set_timestamp(message.created_at, rule.created_at)
    set_timestamp(message.updated_at, rule.updated_at)
    set_timestamp(message.deleted_at, rule.deleted_at)
    return message


def _status_to_proto(status: DeliveryStatus) -> pb.NotificationEventDeliveryStatus:
    message = pb.NotificationEventDeliveryStatus(
        state=status.state.value,
        reason=status.reason,
        channel=pb.NotificationChannelMeta(id=status.channel_id, type=ChannelType.WEBHOOK.value),
    )
    set_timestamp(message.updated_at, status.updated_at)
    if status.annotations:
        message.annotations.CopyFrom(struct_from(status.annotations))
    if status.state.active and status.next_attempt is not None:
        set_timestamp(message.next_attempt, status.next_attempt)
    for attempt in sorted(status.attempts, key=lambda a: a.timestamp, reverse=True):
        response = pb.NotificationEventDeliveryAttemptResponse(body=attempt.body, duration_ms=attempt.duration_ms)
        if attempt.status_code is not None:
            response.status_code = attempt.status_code
        if attempt.url is not None:
            response.url = attempt.url
        item = pb.NotificationEventDeliveryAttempt(state=attempt.state.value, response=response)
        set_timestamp(item.timestamp, attempt.timestamp)
        message.attempts.append(item)
    return message


def event_to_proto(event: Event) -> pb.NotificationEvent:
    message = pb.NotificationEvent(
        id=event.id,
        type=event.type.value,
        delivery_status=[_status_to_proto(s) for s in event.delivery_statuses],
    )
    set_timestamp(message.created_at, event.created_at)
    if event.rule is not None:
        message.rule.CopyFrom(rule_to_proto(event.rule))
    message.payload.CopyFrom(struct_from(event.payload))
    if event.annotations:
        message.annotations.CopyFrom(struct_from(event.annotations))
    return message


def _channel_input(request: Any) -> ChannelInput:
    return ChannelInput(
        type=request.type,
        name=request.name,
        url=request.url,
        disabled=request.disabled,
        custom_headers=dict(request.custom_headers),
        signing_secret=optional_str(request, "signing_secret"),
        metadata=dict(request.metadata),
    )


def _rule_input(request: Any) -> RuleInput:
    return RuleInput(
        type=request.type,
        name=request.name,
        channels=list(request.channels),
        disabled=request.disabled,
        thresholds=[ThresholdInput(value=t.value, type=t.type) for t in request.thresholds],
        features=list(request.features),
        metadata=dict(request.metadata),
    )


class NotificationServicer(notifications_pb2_grpc.NotificationServiceServicer):
    def __init__(
        self,
        service: NotificationService,
        request: RequestContext,
        wait_for_events: Callable[[float], Awaitable[None]],
    ) -> None:
        self._service = service
        self._request = request
        self._wait_for_events = wait_for_events

    # -- channels ------------------------------------------------------------------------------------

    async def ListNotificationChannels(
        self, request: pb.ListNotificationChannelsRequest, context: Ctx
    ) -> pb.ListNotificationChannelsResponse:
        data = ListChannelsInput(
            include_deleted=request.include_deleted,
            include_disabled=request.include_disabled,
            page=request.page or None,
            page_size=request.page_size or None,
            order=request.order or None,
            order_by=request.order_by or None,
        )
        result = await self._service.list_channels(self._request.namespace(context), data)
        return pb.ListNotificationChannelsResponse(
            total_count=result.total_count,
            page=result.page.number,
            page_size=result.page.size,
            items=[channel_to_proto(c) for c in result.items],
        )

    async def CreateNotificationChannel(
        self, request: pb.CreateNotificationChannelRequest, context: Ctx
    ) -> pb.NotificationChannel:
        channel = await self._service.create_channel(self._request.namespace(context), _channel_input(request))
        await rest_hints(context, http_code=201)
        return channel_to_proto(channel)

    async def GetNotificationChannel(
        self, request: pb.GetNotificationChannelRequest, context: Ctx
    ) -> pb.NotificationChannel:
        return channel_to_proto(await self._service.get_channel(self._request.namespace(context), request.channel_id))

    async def UpdateNotificationChannel(
        self, request: pb.UpdateNotificationChannelRequest, context: Ctx
    ) -> pb.NotificationChannel:
        channel = await self._service.update_channel(
            self._request.namespace(context), request.channel_id, _channel_input(request)
        )
        return channel_to_proto(channel)

    async def DeleteNotificationChannel(
        self, request: pb.DeleteNotificationChannelRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self._service.delete_channel(self._request.namespace(context), request.channel_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    # -- rules ---------------------------------------------------------------------------------------

    async def ListNotificationRules(
        self, request: pb.ListNotificationRulesRequest, context: Ctx
    ) -> pb.ListNotificationRulesResponse:
        data = ListRulesInput(
            include_deleted=request.include_deleted,
            include_disabled=request.include_disabled,
            features=list(request.feature),
            channels=list(request.channel),
            page=request.page or None,
            page_size=request.page_size or None,
            order=request.order or None,
            order_by=request.order_by or None,
        )
        result = await self._service.list_rules(self._request.namespace(context), data)
        return pb.ListNotificationRulesResponse(
            total_count=result.total_count,
            page=result.page.number,
            page_size=result.page.size,
            items=[rule_to_proto(r) for r in result.items],
        )

    async def CreateNotificationRule(
        self, request: pb.CreateNotificationRuleRequest, context: Ctx
    ) -> pb.NotificationRule:
        rule = await self._service.create_rule(self._request.namespace(context), _rule_input(request))
        await rest_hints(context, http_code=201)
        return rule_to_proto(rule)

    async def GetNotificationRule(self, request: pb.GetNotificationRuleRequest, context: Ctx) -> pb.NotificationRule:
        return rule_to_proto(await self._service.get_rule(self._request.namespace(context), request.rule_id))

    async def UpdateNotificationRule(
        self, request: pb.UpdateNotificationRuleRequest, context: Ctx
    ) -> pb.NotificationRule:
        rule = await self._service.update_rule(self._request.namespace(context), request.rule_id, _rule_input(request))
        return rule_to_proto(rule)

    async def DeleteNotificationRule(self, request: pb.DeleteNotificationRuleRequest, context: Ctx) -> empty_pb2.Empty:
        await self._service.delete_rule(self._request.namespace(context), request.rule_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def TestNotificationRule(self, request: pb.TestNotificationRuleRequest, context: Ctx) -> pb.NotificationEvent:
        event = await self._service.test_rule(self._request.namespace(context), request.rule_id)
        await rest_hints(context, http_code=201)
        return event_to_proto(event)

    # -- events --------------------------------------------------------------------------------------

    async def ListNotificationEvents(
        self, request: pb.ListNotificationEventsRequest, context: Ctx
    ) -> pb.ListNotificationEventsResponse:
        data = ListEventsInput(
            from_=timestamp_or_none(request, "from"),
            to=timestamp_or_none(request, "to"),
            features=list(request.feature),
            subjects=list(request.subject),
            rules=list(request.rule),
            channels=list(request.channel),
            page=request.page or None,
            page_size=request.page_size or None,
            order=request.order or None,
            order_by=request.order_by or None,
        )
        result = await self._service.list_events(self._request.namespace(context), data)
        return pb.ListNotificationEventsResponse(
            total_count=result.total_count,
            page=result.page.number,
            page_size=result.page.size,
            items=[event_to_proto(e) for e in result.items],
        )

    async def GetNotificationEvent(self, request: pb.GetNotificationEventRequest, context: Ctx) -> pb.NotificationEvent:
        return event_to_proto(await self._service.get_event(self._request.namespace(context), request.event_id))

    async def ResendNotificationEvent(
        self, request: pb.ResendNotificationEventRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self._service.resend_event(self._request.namespace(context), request.event_id, list(request.channels))
        await rest_hints(context, http_code=202)
        return empty_pb2.Empty()

    async def StreamNotificationEvents(
        self, request: pb.StreamNotificationEventsRequest, context: Ctx
    ) -> AsyncIterator[pb.NotificationEvent]:
        namespace = self._request.namespace(context)
        types = list(request.types)
        seq = await self._service.event_seq(namespace, request.after_event_id) if request.after_event_id else 0
        while True:
            events = await self._service.events_after(namespace, seq, types)
            for event in events:
                yield event_to_proto(event)
                seq = event.seq
            if not events:
                await self._wait_for_events(STREAM_POLL_SECONDS)
