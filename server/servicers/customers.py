"""CustomerService and SubjectService: proto <-> domain."""

from __future__ import annotations

from google.protobuf import empty_pb2, json_format

from domain.customers.models import Address, Customer, CustomerInput, ListCustomersInput, Subject, SubjectUpsertInput
from domain.customers.service import CustomerService, SubjectService
from domain.subscriptions.service import SubscriptionService
from domain.subscriptions.wire import subscription_rest
from server.context import RequestContext
from server.convert import message_from_dict, optional_str, set_timestamp, struct_from, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from tally.v1 import customers_pb2, customers_pb2_grpc, subscriptions_pb2

_ADDRESS_FIELDS = ("country", "postal_code", "state", "city", "line1", "line2", "phone_number")


def address_from_proto(message: customers_pb2.Address) -> Address | None:
    address = Address(**{name: optional_str(message, name) for name in _ADDRESS_FIELDS})
    return None if address.is_empty() else address


def customer_to_proto(customer: Customer) -> customers_pb2.Customer:
    message = customers_pb2.Customer(
        id=customer.id,
        name=customer.name,
        metadata=dict(customer.metadata),
        usage_attribution=customers_pb2.CustomerUsageAttribution(subject_keys=list(customer.subject_keys)),
    )
    for name in ("key", "description", "primary_email", "currency"):
        value = getattr(customer, name)
        if value is not None:
            setattr(message, name, value)
    if customer.billing_address is not None:
        message.billing_address.CopyFrom(customers_pb2.Address(**customer.billing_address.as_dict()))
    if customer.annotations:
        message.annotations.CopyFrom(struct_from(dict(customer.annotations)))
    set_timestamp(message.created_at, customer.created_at)
    set_timestamp(message.updated_at, customer.updated_at)
    set_timestamp(message.deleted_at, customer.deleted_at)
    return message


def _customer_input(
    request: customers_pb2.CreateCustomerRequest | customers_pb2.UpdateCustomerRequest,
) -> CustomerInput:
    return CustomerInput(
        name=request.name,
        key=optional_str(request, "key"),
        subject_keys=list(request.usage_attribution.subject_keys),
        description=optional_str(request, "description"),
        primary_email=optional_str(request, "primary_email"),
        currency=optional_str(request, "currency"),
        billing_address=address_from_proto(request.billing_address) if request.HasField("billing_address") else None,
        metadata=dict(request.metadata),
        usage_attribution_given=request.HasField("usage_attribution"),
    )


def subject_to_proto(subject: Subject) -> customers_pb2.Subject:
    message = customers_pb2.Subject(id=subject.id, key=subject.key)
    if subject.display_name is not None:
        message.display_name = subject.display_name
    if subject.metadata is not None:
        message.metadata.CopyFrom(struct_from(dict(subject.metadata)))
    if subject.stripe_customer_id is not None:
        message.stripe_customer_id = subject.stripe_customer_id
    set_timestamp(message.created_at, subject.created_at)
    set_timestamp(message.updated_at, subject.updated_at)
    set_timestamp(message.current_period_start, subject.current_period_start)
    set_timestamp(message.current_period_end, subject.current_period_end)
    return message


class CustomerServicer(customers_pb2_grpc.CustomerServiceServicer):
    def __init__(self, customers: CustomerService, subscriptions: SubscriptionService, request: RequestContext) -> None:
        self._customers = customers
        self._subscriptions = subscriptions
        self._request = request

    async def _with_subscriptions(self, namespace: str, customers: list[Customer]) -> list[customers_pb2.Customer]:
        """Get and list answer OpenMeter's customer with its subscriptions in force now (its
        expand=subscriptions, the default there) and the first of them as currentSubscriptionId."""
        in_force = await self._subscriptions.in_force_by_customer(namespace, [c.id for c in customers])
        now = self._subscriptions.now()
        messages = []
        for customer in customers:
            message = customer_to_proto(customer)
            subs = in_force.get(customer.id, [])
            if subs:
                message.current_subscription_id = subs[0].id
            message.subscriptions.extend(
                message_from_dict(subscription_rest(s, now), subscriptions_pb2.Subscription()) for s in subs
            )
            messages.append(message)
        return messages

    async def CreateCustomer(
        self, request: customers_pb2.CreateCustomerRequest, context: Ctx
    ) -> customers_pb2.Customer:
        customer = await self._customers.create(self._request.namespace(context), _customer_input(request))
        await rest_hints(context, http_code=201)
        return customer_to_proto(customer)

    async def ListCustomers(
        self, request: customers_pb2.ListCustomersRequest, context: Ctx
    ) -> customers_pb2.ListCustomersResponse:
        data = ListCustomersInput(
            page=request.page if request.HasField("page") else None,
            page_size=request.page_size if request.HasField("page_size") else None,
            order=optional_str(request, "order"),
            order_by=optional_str(request, "order_by"),
            include_deleted=request.include_deleted,
            key=optional_str(request, "key"),
            name=optional_str(request, "name"),
            primary_email=optional_str(request, "primary_email"),
            subject=optional_str(request, "subject"),
            plan_key=optional_str(request, "plan_key"),
        )
        namespace = self._request.namespace(context)
        items, total, page, size = await self._customers.list_customers(namespace, data)
        return customers_pb2.ListCustomersResponse(
            total_count=total, page=page, page_size=size, items=await self._with_subscriptions(namespace, list(items))
        )

    async def GetCustomer(self, request: customers_pb2.GetCustomerRequest, context: Ctx) -> customers_pb2.Customer:
        namespace = self._request.namespace(context)
        customer = await self._customers.get(namespace, request.customer_id_or_key)
        (message,) = await self._with_subscriptions(namespace, [customer])
        return message

    async def UpdateCustomer(
        self, request: customers_pb2.UpdateCustomerRequest, context: Ctx
    ) -> customers_pb2.Customer:
        customer = await self._customers.update(
            self._request.namespace(context), request.customer_id_or_key, _customer_input(request)
        )
        return customer_to_proto(customer)

    async def DeleteCustomer(self, request: customers_pb2.DeleteCustomerRequest, context: Ctx) -> empty_pb2.Empty:
        await self._customers.delete(self._request.namespace(context), request.customer_id_or_key)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()


class SubjectServicer(customers_pb2_grpc.SubjectServiceServicer):
    def __init__(self, subjects: SubjectService, request: RequestContext) -> None:
        self._subjects = subjects
        self._request = request

    async def UpsertSubjects(
        self, request: customers_pb2.UpsertSubjectsRequest, context: Ctx
    ) -> customers_pb2.UpsertSubjectsResponse:
        items = [
            SubjectUpsertInput(
                key=item.key,
                display_name=optional_str(item, "display_name"),
                metadata=json_format.MessageToDict(item.metadata) if item.HasField("metadata") else None,
                current_period_start=timestamp_or_none(item, "current_period_start"),
                current_period_end=timestamp_or_none(item, "current_period_end"),
                stripe_customer_id=optional_str(item, "stripe_customer_id"),
            )
            for item in request.items
        ]
        subjects = await self._subjects.upsert(self._request.namespace(context), items)
        await rest_hints(context, shape="array")
        return customers_pb2.UpsertSubjectsResponse(items=[subject_to_proto(s) for s in subjects])

    async def ListSubjects(
        self, request: customers_pb2.ListSubjectsRequest, context: Ctx
    ) -> customers_pb2.ListSubjectsResponse:
        subjects = await self._subjects.list_subjects(self._request.namespace(context))
        await rest_hints(context, shape="array")
        return customers_pb2.ListSubjectsResponse(items=[subject_to_proto(s) for s in subjects])

    async def GetSubject(self, request: customers_pb2.GetSubjectRequest, context: Ctx) -> customers_pb2.Subject:
        subject = await self._subjects.get(self._request.namespace(context), request.subject_id_or_key)
        return subject_to_proto(subject)

    async def DeleteSubject(self, request: customers_pb2.DeleteSubjectRequest, context: Ctx) -> empty_pb2.Empty:
        await self._subjects.delete(self._request.namespace(context), request.subject_id_or_key)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()
