"""InvoiceService and CustomInvoicingService: proto <-> domain for invoices.

Requests become the camelCase dicts an OpenMeter client sends (server/convert.py) and are read by
domain/billing/invoice_rest.py; answers are that module's OpenMeter-shaped dicts read back into the
response messages, plus the invoice's workflow, encoded as the billing profiles encode theirs.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2, json_format

from domain.billing.invoice_rest import (
    EXPAND,
    invoice_rest,
    lines_rest,
    parse_invoice_now,
    parse_invoice_update,
    parse_list_query,
    parse_payment_trigger,
    parse_pending_lines,
    parse_sent_to_customer_at,
    parse_void,
)
from domain.billing.invoice_service import InvoiceService
from domain.billing.invoice_states import Action
from domain.billing.invoices import InvoiceWithLines
from domain.billing.models import WorkflowPatch, parse_expand
from domain.billing.service import AppService
from domain.errors import NotFoundError, Violations
from server.context import RequestContext
from server.convert import message_from_dict, optional_str, request_dict
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from server.servicers.apps import app_to_proto
from server.servicers.billing import workflow_out, workflow_patch_in
from tally.v1 import apps_pb2, invoices_pb2_grpc
from tally.v1 import invoices_pb2 as pb


def invoice_message(invoices: InvoiceService, found: InvoiceWithLines, *, with_lines: bool = True) -> pb.Invoice:
    """The invoice as the API answers it (also the data of invoice notifications)."""
    invoice = found.invoice
    message = message_from_dict(invoice_rest(found, invoices.conditions(invoice), with_lines=with_lines), pb.Invoice())
    message.workflow.source_billing_profile_id = invoice.profile_id
    message.workflow.workflow.CopyFrom(workflow_out(invoice.workflow))
    message.workflow.apps.tax.CopyFrom(apps_pb2.App(id=invoice.tax_app_id))
    message.workflow.apps.invoicing.CopyFrom(apps_pb2.App(id=invoice.invoicing_app_id))
    message.workflow.apps.payment.CopyFrom(apps_pb2.App(id=invoice.payment_app_id))
    return message


def _printed(message: pb.Invoice) -> dict[str, Any]:
    """The invoice's REST JSON, printed as Envoy prints it (every field, camelCase)."""
    body: dict[str, Any] = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return body


def invoice_json(invoices: InvoiceService, found: InvoiceWithLines) -> dict[str, Any]:
    """The invoice's REST JSON, its apps as references (GET /invoices/{id} without expand)."""
    return _printed(invoice_message(invoices, found))


async def invoice_event_json(invoices: InvoiceService, apps: AppService, found: InvoiceWithLines) -> dict[str, Any]:
    """The data of invoice.created / invoice.updated: the invoice with its lines and its workflow's
    apps in full, as OpenMeter's webhook sends it (MapEventInvoiceToAPI)."""
    message = invoice_message(invoices, found)
    await expand_workflow_apps(apps, found.invoice.namespace, [message])
    return _printed(message)


async def expand_workflow_apps(apps: AppService, namespace: str, messages: list[pb.Invoice]) -> None:
    """expand=workflow.apps: the workflow's apps in full instead of references."""
    found: dict[str, apps_pb2.App | None] = {}
    for message in messages:
        for ref in (message.workflow.apps.tax, message.workflow.apps.invoicing, message.workflow.apps.payment):
            if ref.id not in found:
                try:
                    app = await apps.get_app(namespace, ref.id)
                    found[ref.id] = app_to_proto(app, apps.marketplace)
                except NotFoundError:
                    # No such app (an uninstalled one is still answered): the reference stays.
                    found[ref.id] = None
            full = found[ref.id]
            if full is not None:
                ref.CopyFrom(full)


def _opt_int(message: object, name: str) -> int | None:
    return getattr(message, name) if message.HasField(name) else None  # type: ignore[attr-defined]


class InvoiceServicer(invoices_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, invoices: InvoiceService, apps: AppService, request: RequestContext) -> None:
        self._invoices = invoices
        self._apps = apps
        self._request = request

    def _out(self, found: InvoiceWithLines, *, with_lines: bool = True) -> pb.Invoice:
        return invoice_message(self._invoices, found, with_lines=with_lines)

    async def _expand_apps(self, namespace: str, messages: list[pb.Invoice]) -> None:
        await expand_workflow_apps(self._apps, namespace, messages)

    async def ListInvoices(self, request: pb.ListInvoicesRequest, context: Ctx) -> pb.ListInvoicesResponse:
        v = Violations()
        expand = parse_expand(v, list(request.expand), EXPAND)
        v.raise_if_any()
        query = parse_list_query(
            statuses=list(request.statuses),
            extended_statuses=list(request.extended_statuses),
            customers=list(request.customers),
            times={
                name: optional_str(request, field)
                for name, field in (
                    ("issuedAfter", "issued_after"),
                    ("issuedBefore", "issued_before"),
                    ("periodStartAfter", "period_start_after"),
                    ("periodStartBefore", "period_start_before"),
                    ("createdAfter", "created_after"),
                    ("createdBefore", "created_before"),
                )
            },
            include_deleted=request.include_deleted,
            page=_opt_int(request, "page"),
            page_size=_opt_int(request, "page_size"),
            order=optional_str(request, "order"),
            order_by=optional_str(request, "order_by"),
        )
        with_lines = expand.get("lines", False)
        namespace = self._request.namespace(context)
        found, total = await self._invoices.list_invoices(namespace, query, with_lines=with_lines, live=True)
        items = [self._out(x, with_lines=with_lines) for x in found]
        if expand.get("workflow.apps"):
            await self._expand_apps(namespace, items)
        return pb.ListInvoicesResponse(
            total_count=total, page=query.offset // query.limit + 1, page_size=query.limit, items=items
        )

    async def InvoicePendingLines(
        self, request: pb.InvoicePendingLinesRequest, context: Ctx
    ) -> pb.InvoicePendingLinesResponse:
        data = parse_invoice_now(request_dict(request))
        made = await self._invoices.invoice_now(self._request.namespace(context), data)
        await rest_hints(context, http_code=201, shape="array")
        return pb.InvoicePendingLinesResponse(items=[self._out(x) for x in made])

    async def GetInvoice(self, request: pb.GetInvoiceRequest, context: Ctx) -> pb.Invoice:
        v = Violations()
        expand = parse_expand(v, list(request.expand), EXPAND)
        v.raise_if_any()
        namespace = self._request.namespace(context)
        found = await self._invoices.get(
            namespace, request.invoice_id, include_deleted_lines=request.include_deleted_lines, live=True
        )
        # Lines come with a single invoice unless the caller expanded other things only.
        message = self._out(found, with_lines=not request.expand or expand.get("lines", False))
        if expand.get("workflow.apps"):
            await self._expand_apps(namespace, [message])
        return message

    async def UpdateInvoice(self, request: pb.UpdateInvoiceRequest, context: Ctx) -> pb.Invoice:
        update = parse_invoice_update(request_dict(request))
        workflow = None
        if request.HasField("workflow"):
            # The settings of a draft's workflow a PUT sets (OpenMeter's mergeInvoiceWorkflowFromAPI);
            # the rest of the body's workflow is kept as snapshotted.
            v = Violations()
            given = workflow_patch_in(request.workflow.workflow, v, "workflow.workflow")
            workflow = WorkflowPatch(
                auto_advance=given.auto_advance,
                draft_period=given.draft_period,
                due_after=given.due_after,
                collection_method=given.collection_method,
            )
            v.raise_if_any()
        found = await self._invoices.update_lines(
            self._request.namespace(context),
            request.invoice_id,
            update.lines,
            description=update.description,
            metadata=update.metadata,
            supplier=update.supplier,
            customer=update.customer,
            workflow=workflow,
        )
        return self._out(found)

    async def DeleteInvoice(self, request: pb.DeleteInvoiceRequest, context: Ctx) -> empty_pb2.Empty:
        await self._invoices.delete(self._request.namespace(context), request.invoice_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def _act(self, request: pb.InvoiceActionRequest, context: Ctx, action: Action) -> pb.Invoice:
        return self._out(await self._invoices.act(self._request.namespace(context), request.invoice_id, action))

    async def AdvanceInvoice(self, request: pb.InvoiceActionRequest, context: Ctx) -> pb.Invoice:
        return await self._act(request, context, Action.ADVANCE)

    async def ApproveInvoice(self, request: pb.InvoiceActionRequest, context: Ctx) -> pb.Invoice:
        return await self._act(request, context, Action.APPROVE)

    async def RetryInvoice(self, request: pb.InvoiceActionRequest, context: Ctx) -> pb.Invoice:
        return await self._act(request, context, Action.RETRY)

    async def SnapshotInvoiceQuantities(self, request: pb.InvoiceActionRequest, context: Ctx) -> pb.Invoice:
        return await self._act(request, context, Action.SNAPSHOT_QUANTITIES)

    async def VoidInvoice(self, request: pb.VoidInvoiceRequest, context: Ctx) -> pb.Invoice:
        found = await self._invoices.void(
            self._request.namespace(context), request.invoice_id, parse_void(request_dict(request))
        )
        return self._out(found)

    async def CreatePendingInvoiceLines(
        self, request: pb.CreatePendingInvoiceLinesRequest, context: Ctx
    ) -> pb.CreatePendingInvoiceLinesResponse:
        data = parse_pending_lines(request_dict(request))
        gathering, lines, created = await self._invoices.create_pending_lines(
            self._request.namespace(context), request.customer_id, data
        )
        await rest_hints(context, http_code=201)
        response = pb.CreatePendingInvoiceLinesResponse(invoice=self._out(gathering), is_invoice_new=created)
        for line in lines_rest(lines):
            response.lines.append(message_from_dict(line, pb.InvoiceLine()))
        return response

    async def SimulateInvoice(self, request: pb.SimulateInvoiceRequest, context: Ctx) -> pb.Invoice:
        data = parse_pending_lines(request_dict(request), simulation=True)
        found = await self._invoices.simulate(self._request.namespace(context), request.customer_id, data)
        message = self._out(found)
        if request.HasField("number"):
            message.number = request.number
        # Nothing was stored, so no action applies to it (OpenMeter's simulation has empty status
        # details; its extended status stays draft.created).
        message.status_details.ClearField("available_actions")
        message.status_details.available_actions.SetInParent()
        return message


class CustomInvoicingServicer(invoices_pb2_grpc.CustomInvoicingServiceServicer):
    def __init__(self, invoices: InvoiceService, request: RequestContext) -> None:
        self._invoices = invoices
        self._request = request

    async def DraftSynchronized(
        self, request: pb.CustomInvoicingDraftSynchronizedRequest, context: Ctx
    ) -> empty_pb2.Empty:
        result = request.invoicing
        await self._invoices.app_callback(
            self._request.namespace(context),
            request.invoice_id,
            Action.DRAFT_SYNCHRONIZED,
            invoice_number=optional_str(result, "invoice_number"),
            invoicing_external_id=optional_str(result, "external_id"),
            line_external_ids=[(m.line_id, m.external_id) for m in result.line_external_ids],
            line_discount_external_ids=[(m.line_discount_id, m.external_id) for m in result.line_discount_external_ids],
        )
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def IssuingSynchronized(
        self, request: pb.CustomInvoicingIssuingSynchronizedRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self._invoices.app_callback(
            self._request.namespace(context),
            request.invoice_id,
            Action.ISSUING_SYNCHRONIZED,
            invoice_number=optional_str(request.invoicing, "invoice_number"),
            payment_external_id=optional_str(request.payment, "external_id"),
            sent_to_customer_at=parse_sent_to_customer_at(optional_str(request.invoicing, "sent_to_customer_at")),
        )
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def UpdatePaymentStatus(
        self, request: pb.CustomInvoicingUpdatePaymentStatusRequest, context: Ctx
    ) -> empty_pb2.Empty:
        action = parse_payment_trigger(request.trigger)
        await self._invoices.app_callback(self._request.namespace(context), request.invoice_id, action)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()
