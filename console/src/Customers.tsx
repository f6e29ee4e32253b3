/**
 * Customers: the list (searched by name through the API) and a customer's page with its subjects,
 * entitlements and each entitlement's current value (access, balance, usage, overage) and grants.
 */
import { useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { Field } from "./Field.tsx";
import { browserTimeZone, formatNumber, formatTime } from "./format.ts";
import type { Customer } from "../../gen/ts/tally/v1/customers_pb.ts";
import type { Entitlement, EntitlementValue, Grant } from "../../gen/ts/tally/v1/entitlements_pb.ts";

const PAGE_SIZE = 50;

export function CustomersPage({ client }: { client: TallyClient }) {
  const [search, setSearch] = useState("");
  const [page, setPage] = useState(1);
  const [result, setResult] = useState<{ items: Customer[]; totalCount: number } | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let current = true;
    client.customers.listCustomers({ name: search || undefined, page, pageSize: PAGE_SIZE, orderBy: "name" }).then(
      (response) => {
        if (!current) return;
        setResult({ items: response.items, totalCount: response.totalCount });
        setError(null);
      },
      (failure) => current && setError(describeError(failure)),
    );
    return () => {
      current = false;
    };
  }, [client, search, page]);

  const pages = result ? Math.max(1, Math.ceil(result.totalCount / PAGE_SIZE)) : 1;
  return (
    <>
      <h2>Customers</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="panel controls">
        <Field label="Search by name">
          {(id) => (
            <input
              id={id}
              type="search"
              value={search}
              onChange={(event) => {
                setSearch(event.target.value);
                setPage(1);
              }}
            />
          )}
        </Field>
        {result && (
          <span className="muted">
            {result.totalCount} customers · page {page} of {pages}{" "}
            <button type="button" className="secondary" disabled={page <= 1} onClick={() => setPage(page - 1)}>
              Previous
            </button>{" "}
            <button type="button" className="secondary" disabled={page >= pages} onClick={() => setPage(page + 1)}>
              Next
            </button>
          </span>
        )}
      </div>
      <section aria-label="Customer list" data-state={result ? "done" : "loading"}>
        <table aria-label="Customers">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Key</th>
              <th scope="col">Subjects</th>
              <th scope="col">Email</th>
              <th scope="col">Currency</th>
            </tr>
          </thead>
          <tbody>
            {result?.items.map((customer) => (
              <tr key={customer.id}>
                <td>
                  <a href={`#/customers/${encodeURIComponent(customer.id)}`}>{customer.name}</a>
                </td>
                <td>{customer.key ?? ""}</td>
                <td>{customer.usageAttribution?.subjectKeys.join(", ")}</td>
                <td>{customer.primaryEmail ?? ""}</td>
                <td>{customer.currency ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}

interface EntitlementRow {
  entitlement: Entitlement;
  value: EntitlementValue | null;
  grants: Grant[];
}

export function CustomerPage({ client, idOrKey }: { client: TallyClient; idOrKey: string }) {
  const [customer, setCustomer] = useState<Customer | null>(null);
  const [entitlements, setEntitlements] = useState<EntitlementRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const timeZone = browserTimeZone();

  useEffect(() => {
    let current = true;
    (async () => {
      const found = await client.customers.getCustomer({ customerIdOrKey: idOrKey });
      if (!current) return;
      setCustomer(found);
      const list = await client.entitlements.listCustomerEntitlements({ customerIdOrKey: found.id, pageSize: 1000 });
      const rows = await Promise.all(
        list.items.map(async (entitlement): Promise<EntitlementRow> => {
          const request = { customerIdOrKey: found.id, entitlementIdOrFeatureKey: entitlement.id };
          const [value, grants] = await Promise.all([
            client.entitlements.getCustomerEntitlementValue(request),
            entitlement.type === "metered"
              ? client.entitlements.listCustomerEntitlementGrants({ ...request, pageSize: 1000 }).then((r) => r.items)
              : Promise.resolve([]),
          ]);
          return { entitlement, value, grants };
        }),
      );
      if (current)
        setEntitlements(rows.sort((a, b) => a.entitlement.featureKey.localeCompare(b.entitlement.featureKey)));
    })().catch((failure) => current && setError(describeError(failure)));
    return () => {
      current = false;
    };
  }, [client, idOrKey]);

  return (
    <>
      <p>
        <a href="#/customers">← Customers</a>
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {customer && (
        <>
          <h2>{customer.name}</h2>
          <div className="panel">
            <dl className="facts">
              <dt>ID</dt>
              <dd>{customer.id}</dd>
              <dt>Key</dt>
              <dd>{customer.key ?? "—"}</dd>
              <dt>Subjects</dt>
              <dd>{customer.usageAttribution?.subjectKeys.join(", ") || "—"}</dd>
              <dt>Email</dt>
              <dd>{customer.primaryEmail ?? "—"}</dd>
              <dt>Currency</dt>
              <dd>{customer.currency ?? "—"}</dd>
              <dt>Created</dt>
              <dd>
                {formatTime(customer.createdAt, timeZone)} ({timeZone})
              </dd>
            </dl>
          </div>
        </>
      )}
      <h3>Entitlements</h3>
      <section aria-label="Entitlements" data-state={entitlements ? "done" : "loading"}>
        {entitlements && entitlements.length === 0 && <p className="muted">No entitlements.</p>}
        {entitlements && entitlements.length > 0 && (
          <table aria-label="Entitlements">
            <thead>
              <tr>
                <th scope="col">Feature</th>
                <th scope="col">Type</th>
                <th scope="col">Access</th>
                <th scope="col" className="num">
                  Balance
                </th>
                <th scope="col" className="num">
                  Usage
                </th>
                <th scope="col" className="num">
                  Overage
                </th>
                <th scope="col">Usage period</th>
                <th scope="col">Grants (amount · priority · expires)</th>
              </tr>
            </thead>
            <tbody>
              {entitlements.map(({ entitlement, value, grants }) => (
                <tr key={entitlement.id} data-feature={entitlement.featureKey}>
                  <td>{entitlement.featureKey}</td>
                  <td>{entitlement.type}</td>
                  <td className={value?.hasAccess ? "access-yes" : "access-no"}>{value?.hasAccess ? "yes" : "no"}</td>
                  <td className="num" data-column="balance" data-value={value?.balance ?? ""}>
                    {formatNumber(value?.balance)}
                  </td>
                  <td className="num" data-column="usage" data-value={value?.usage ?? ""}>
                    {formatNumber(value?.usage)}
                  </td>
                  <td className="num" data-column="overage" data-value={value?.overage ?? ""}>
                    {formatNumber(value?.overage)}
                  </td>
                  <td>
                    {entitlement.currentUsagePeriod
                      ? `${formatTime(entitlement.currentUsagePeriod.from, timeZone)} – ${formatTime(entitlement.currentUsagePeriod.to, timeZone)}`
                      : "—"}
                  </td>
                  <td>
                    {grants.length === 0
                      ? "—"
                      : grants.map((grant) => (
                          <div key={grant.id}>
                            {formatNumber(grant.amount)} · {grant.priority ?? "—"} ·{" "}
                            {formatTime(grant.expiresAt, timeZone)}
                          </div>
                        ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
