/**
 * Invoices: the list (newest first, with status and total) and an invoice's page: its customer,
 * period, status and the times it went through, its lines and totals, and the actions the server
 * says it allows now (statusDetails.availableActions), for keys that may write.
 */
import { useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { browserTimeZone, formatMoney, formatTime } from "./format.ts";
import type { Invoice, InvoiceAvailableActions } from "../../gen/ts/tally/v1/invoices_pb.ts";
import { Problem } from "./Notice.tsx";

const PAGE_SIZE = 50;

// RFC 3339 strings (invoices carry OpenMeter's string times) in the reader's zone.
function formatWhen(value: string | undefined, timeZone: string): string {
  return value ? formatTime(new Date(value), timeZone) : "—";
}

export function InvoicesPage({ client }: { client: TallyClient }) {
  const [invoices, setInvoices] = useState<{ items: Invoice[]; totalCount: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const timeZone = browserTimeZone();

  useEffect(() => {
    client.invoices.listInvoices({ pageSize: PAGE_SIZE, order: "DESC", orderBy: "createdAt" }).then(
      (response) => setInvoices({ items: response.items, totalCount: response.totalCount }),
      (failure) => setError(describeError(failure)),
    );
  }, [client]);

  return (
    <>
      <h2>Invoices</h2>
      <Problem text={error} />
      {invoices && (
        <p className="muted">
          {invoices.totalCount} invoices{invoices.totalCount > PAGE_SIZE ? `, the newest ${PAGE_SIZE} shown` : ""}.
        </p>
      )}
      <section aria-label="Invoice list" data-state={invoices ? "done" : "loading"}>
        <table aria-label="Invoices">
          <thead>
            <tr>
              <th scope="col">Number</th>
              <th scope="col">Customer</th>
              <th scope="col">Status</th>
              <th scope="col">Period ({timeZone})</th>
              <th scope="col">Issued</th>
              <th scope="col" className="num">
                Total
              </th>
            </tr>
          </thead>
          <tbody>
            {invoices?.items.map((invoice) => (
              <tr key={invoice.id} data-invoice={invoice.id}>
                <td>
                  <a href={`#/invoices/${encodeURIComponent(invoice.id)}`}>{invoice.number || invoice.id}</a>
                </td>
                <td>{invoice.customer?.name}</td>
                <td>{invoice.statusDetails?.extendedStatus || invoice.status}</td>
                <td>
                  {formatWhen(invoice.period?.from, timeZone)} – {formatWhen(invoice.period?.to, timeZone)}
                </td>
                <td>{formatWhen(invoice.issuedAt, timeZone)}</td>
                <td className="num" data-column="total">
                  {formatMoney(invoice.totals?.total, invoice.currency)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}

// The actions a button can take, in the order they are offered; `invoice` (a gathering invoice's
// "invoice now") is left to the API.
const ACTIONS = [
  { key: "approve", label: "Approve" },
  { key: "advance", label: "Advance" },
  { key: "snapshotQuantities", label: "Snapshot quantities" },
  { key: "retry", label: "Retry" },
  { key: "void", label: "Void…" },
  { key: "delete", label: "Delete…" },
] as const;
type ActionKey = (typeof ACTIONS)[number]["key"];

export function InvoicePage({ client, canWrite, id }: { client: TallyClient; canWrite: boolean; id: string }) {
  const [invoice, setInvoice] = useState<Invoice | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const timeZone = browserTimeZone();

  useEffect(() => {
    client.invoices.getInvoice({ invoiceId: id, expand: ["lines"] }).then(setInvoice, (failure) => {
      setError(describeError(failure));
    });
  }, [client, id]);

  const act = async (key: ActionKey) => {
    const request = { invoiceId: id };
    try {
      let next: Invoice | null = null;
      if (key === "void") {
        const reason = window.prompt("Why is this invoice void? (kept with it)");
        if (!reason) return;
        setBusy(true);
        next = await client.invoices.voidInvoice({ ...request, reason });
      } else if (key === "delete") {
        if (!window.confirm("Delete this draft? Its lines go back to the customer's pending lines.")) return;
        setBusy(true);
        await client.invoices.deleteInvoice(request);
        window.location.hash = "#/invoices";
        return;
      } else {
        setBusy(true);
        const call = {
          approve: client.invoices.approveInvoice,
          advance: client.invoices.advanceInvoice,
          snapshotQuantities: client.invoices.snapshotInvoiceQuantities,
          retry: client.invoices.retryInvoice,
        }[key];
        next = await call(request);
      }
      // The answer has no lines unless asked for: read the invoice again, whole.
      setInvoice(next && (await client.invoices.getInvoice({ invoiceId: id, expand: ["lines"] })));
      setError(null);
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };

  const currency = invoice?.currency ?? "USD";
  const available: InvoiceAvailableActions | undefined = invoice?.statusDetails?.availableActions;
  const offered = ACTIONS.filter((action) => available?.[action.key] !== undefined);
  const moments: [string, string | undefined][] = invoice
    ? [
        ["created", invoice.createdAt],
        ["draft until", invoice.draftUntil],
        ["quantities snapshotted", invoice.quantitySnapshotedAt],
        ["issued", invoice.issuedAt],
        ["sent to customer", invoice.sentToCustomerAt],
        ["collection", invoice.collectionAt],
        ["due", invoice.dueAt],
        ["voided", invoice.voidedAt],
      ]
    : [];
  const timeline = moments
    .filter((moment): moment is [string, string] => Boolean(moment[1]))
    .sort((a, b) => Date.parse(a[1]) - Date.parse(b[1]));

  return (
    <>
      <p>
        <a href="#/invoices">← Invoices</a>
      </p>
      <Problem text={error} />
      {invoice && (
        <section aria-label="Invoice" data-state={busy ? "loading" : "done"} data-status={invoice.status}>
          <h2>Invoice {invoice.number || invoice.id}</h2>
          <div className="panel">
            <dl className="facts">
              <dt>Customer</dt>
              <dd>
                {invoice.customer && (
                  <a href={`#/customers/${encodeURIComponent(invoice.customer.id)}`}>{invoice.customer.name}</a>
                )}
              </dd>
              <dt>Status</dt>
              <dd data-testid="invoice-status">
                {invoice.status}
                {invoice.statusDetails?.extendedStatus && invoice.statusDetails.extendedStatus !== invoice.status
                  ? ` (${invoice.statusDetails.extendedStatus})`
                  : ""}
              </dd>
              <dt>Period ({timeZone})</dt>
              <dd>
                {formatWhen(invoice.period?.from, timeZone)} – {formatWhen(invoice.period?.to, timeZone)}
              </dd>
              <dt>Supplier</dt>
              <dd>{invoice.supplier?.name ?? "—"}</dd>
              {invoice.voidReason && (
                <>
                  <dt>Void reason</dt>
                  <dd>{invoice.voidReason}</dd>
                </>
              )}
            </dl>
          </div>
          {canWrite && offered.length > 0 && (
            <div className="panel controls" aria-label="Invoice actions">
              {offered.map((action) => (
                <button key={action.key} type="button" disabled={busy} onClick={() => void act(action.key)}>
                  {action.label}
                </button>
              ))}
              <span className="muted">
                {offered
                  .map(
                    (action) => `${action.label.replace("…", "")} → ${available?.[action.key]?.resultingState ?? ""}`,
                  )
                  .join(" · ")}
              </span>
            </div>
          )}
          <h3>Lines</h3>
          <table aria-label="Invoice lines">
            <thead>
              <tr>
                <th scope="col">Line</th>
                <th scope="col">Period</th>
                <th scope="col" className="num">
                  Quantity
                </th>
                <th scope="col" className="num">
                  Per unit
                </th>
                <th scope="col" className="num">
                  Discounts
                </th>
                <th scope="col" className="num">
                  Total
                </th>
              </tr>
            </thead>
            <tbody>
              {invoice.lines.map((line) => (
                <tr key={line.id} data-line={line.name}>
                  <td>
                    {line.name}
                    {line.featureKey && <div className="muted">{line.featureKey}</div>}
                  </td>
                  <td>
                    {formatWhen(line.period?.from, timeZone)} – {formatWhen(line.period?.to, timeZone)}
                  </td>
                  <td className="num">{line.quantity ?? "—"}</td>
                  <td className="num">{formatMoney(line.perUnitAmount, currency, true)}</td>
                  <td className="num">{formatMoney(line.totals?.discountsTotal, currency)}</td>
                  <td className="num" data-column="total">
                    {formatMoney(line.totals?.total, currency)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Totals</h3>
          <div className="panel">
            <dl className="facts">
              <dt>Lines</dt>
              <dd>{formatMoney(invoice.totals?.amount, currency)}</dd>
              <dt>Charges</dt>
              <dd>{formatMoney(invoice.totals?.chargesTotal, currency)}</dd>
              <dt>Discounts</dt>
              <dd>{formatMoney(invoice.totals?.discountsTotal, currency)}</dd>
              <dt>Credits</dt>
              <dd>{formatMoney(invoice.totals?.creditsTotal, currency)}</dd>
              <dt>Taxes</dt>
              <dd>{formatMoney(invoice.totals?.taxesTotal, currency)}</dd>
              <dt>Total</dt>
              <dd data-testid="invoice-total">
                <strong>{formatMoney(invoice.totals?.total, currency)}</strong>
              </dd>
            </dl>
          </div>
          <h3>Timeline ({timeZone})</h3>
          <ol aria-label="Timeline">
            {timeline.map(([label, at]) => (
              <li key={label}>
                {formatWhen(at, timeZone)}: {label}
              </li>
            ))}
          </ol>
        </section>
      )}
    </>
  );
}
