/**
 * Customers: the list (searched by name through the API) and a customer's page with its subjects,
 * entitlements and each entitlement's current value (access, balance, usage, overage) and grants.
 * With a key that may write: create a customer, create an entitlement (metered, boolean or static),
 * grant credits, reset usage (after a confirmation).
 * The server decides every write; a refusal is shown in its own words.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type FormEvent, useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { BurnDown } from "./BurnDown.tsx";
import { Field } from "./Field.tsx";
import { browserTimeZone, formatNumber, formatTime } from "./format.ts";
import type { Customer } from "../../gen/ts/tally/v1/customers_pb.ts";
import type { Entitlement, EntitlementValue, Grant } from "../../gen/ts/tally/v1/entitlements_pb.ts";
import type { Subscription } from "../../gen/ts/tally/v1/subscriptions_pb.ts";
import { describeCadence } from "./price.ts";
import { Problem } from "./Notice.tsx";

const PAGE_SIZE = 50;

export function CustomersPage({ client, canWrite }: { client: TallyClient; canWrite: boolean }) {
  const [search, setSearch] = useState("");
  const [page, setPage] = useState(1);
  const [result, setResult] = useState<{ items: Customer[]; totalCount: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState(0);

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
  }, [client, search, page, created]);

  const pages = result ? Math.max(1, Math.ceil(result.totalCount / PAGE_SIZE)) : 1;
  return (
    <>
      <h2>Customers</h2>
      <Problem text={error} />
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
      {canWrite && <CreateCustomer client={client} onCreated={() => setCreated((n) => n + 1)} />}
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

export function CustomerPage({
  client,
  canWrite,
  idOrKey,
}: {
  client: TallyClient;
  canWrite: boolean;
  idOrKey: string;
}) {
  const [customer, setCustomer] = useState<Customer | null>(null);
  const [entitlements, setEntitlements] = useState<EntitlementRow[] | null>(null);
  const [subscriptions, setSubscriptions] = useState<Subscription[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Bumped after a write: the page reads everything again from the API.
  const [version, setVersion] = useState(0);
  const timeZone = browserTimeZone();

  useEffect(() => {
    let current = true;
    (async () => {
      const found = await client.customers.getCustomer({ customerIdOrKey: idOrKey });
      if (!current) return;
      setCustomer(found);
      client.subscriptions.listCustomerSubscriptions({ customerIdOrKey: found.id, pageSize: 100 }).then(
        (response) => current && setSubscriptions(response.items),
        (failure) => current && setError(describeError(failure)),
      );
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
  }, [client, idOrKey, version]);

  const metered = (entitlements ?? []).filter((row) => row.entitlement.type === "metered");
  return (
    <>
      <p>
        <a href="#/customers">← Customers</a>
      </p>
      <Problem text={error} />
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
      <h3>Subscriptions</h3>
      <section aria-label="Subscriptions" data-state={subscriptions ? "done" : "loading"}>
        {subscriptions?.length === 0 && <p className="muted">No subscriptions.</p>}
        {subscriptions && subscriptions.length > 0 && (
          <table aria-label="Subscriptions">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Plan</th>
                <th scope="col">Status</th>
                <th scope="col">Active ({timeZone})</th>
                <th scope="col">Billed</th>
              </tr>
            </thead>
            <tbody>
              {subscriptions.map((subscription) => (
                <tr key={subscription.id} data-subscription={subscription.id}>
                  <td>{subscription.name}</td>
                  <td>
                    {subscription.plan ? (
                      <a href="#/plans">
                        {subscription.plan.key} v{subscription.plan.version}
                      </a>
                    ) : (
                      "custom"
                    )}
                  </td>
                  <td>{subscription.status}</td>
                  <td>
                    {formatTime(subscription.activeFrom, timeZone)} –{" "}
                    {subscription.activeTo ? formatTime(subscription.activeTo, timeZone) : "no end"}
                  </td>
                  <td>
                    {describeCadence(subscription.billingCadence)} in {subscription.currency}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
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
      {canWrite && customer && (
        <CreateEntitlement client={client} customerId={customer.id} onCreated={() => setVersion((n) => n + 1)} />
      )}
      {customer && metered.length > 0 && <h3>Burn-down</h3>}
      {customer &&
        metered.map(({ entitlement, grants }) => (
          <BurnDown
            key={`${entitlement.id}/${version}`}
            client={client}
            customerId={customer.id}
            entitlement={entitlement}
            grants={grants}
            timeZone={timeZone}
          />
        ))}
      {canWrite && customer && metered.length > 0 && (
        <EntitlementActions
          client={client}
          customerId={customer.id}
          featureKeys={metered.map((row) => row.entitlement.featureKey)}
          onChanged={() => setVersion((n) => n + 1)}
        />
      )}
    </>
  );
}

function CreateCustomer({ client, onCreated }: { client: TallyClient; onCreated: () => void }) {
  const [name, setName] = useState("");
  const [key, setKey] = useState("");
  const [subjects, setSubjects] = useState("");
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const subjectKeys = subjects
        .split(",")
        .map((subject) => subject.trim())
        .filter(Boolean);
      const customer = await client.customers.createCustomer({
        name,
        key: key || undefined,
        // The key counts as a subject too (the server's rule), so it need not be repeated here.
        usageAttribution: { subjectKeys },
      });
      setMessage({ error: false, text: `Created ${customer.name}.` });
      setName("");
      setKey("");
      setSubjects("");
      onCreated();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  return (
    <form className="panel controls" aria-label="Create customer" onSubmit={(event) => void submit(event)}>
      <Field label="Name">
        {(id) => <input id={id} required value={name} onChange={(e) => setName(e.target.value)} />}
      </Field>
      <Field label="Key">{(id) => <input id={id} value={key} onChange={(e) => setKey(e.target.value)} />}</Field>
      <Field label="Other subjects (comma-separated)">
        {(id) => <input id={id} value={subjects} onChange={(e) => setSubjects(e.target.value)} />}
      </Field>
      <button type="submit">Create customer</button>
      {message && (
        <p className={message.error ? "error" : "muted"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
    </form>
  );
}

const EXPIRY_UNITS = ["HOUR", "DAY", "WEEK", "MONTH", "YEAR"] as const;
const ENTITLEMENT_TYPES = ["metered", "boolean", "static"] as const;
const USAGE_PERIODS = ["DAY", "WEEK", "MONTH", "YEAR"] as const;

/** The v2 create (POST /api/v2/customers/{customer}/entitlements), with the fields each type takes;
 * the server checks them (feature, period, config JSON) and a refusal is shown in its words. */
function CreateEntitlement({
  client,
  customerId,
  onCreated,
}: {
  client: TallyClient;
  customerId: string;
  onCreated: () => void;
}) {
  const [type, setType] = useState<string>("metered");
  const [featureKey, setFeatureKey] = useState("");
  const [usagePeriod, setUsagePeriod] = useState<string>("MONTH");
  const [issue, setIssue] = useState("");
  const [softLimit, setSoftLimit] = useState(false);
  const [config, setConfig] = useState("");
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    const metered = type === "metered";
    try {
      const entitlement = await client.entitlements.createCustomerEntitlement({
        customerIdOrKey: customerId,
        entitlement: {
          type,
          featureKey,
          usagePeriod: metered ? { interval: usagePeriod } : undefined,
          isSoftLimit: metered ? softLimit : undefined,
          // The v2 form of issueAfterReset: a grant of this amount at the start of every period.
          issue: metered && issue ? { amount: Number(issue) } : undefined,
          config: type === "static" ? config : undefined,
        },
      });
      setMessage({ error: false, text: `Created the ${entitlement.type} entitlement to ${entitlement.featureKey}.` });
      setFeatureKey("");
      setIssue("");
      setConfig("");
      onCreated();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  return (
    <>
      <h3>Create entitlement</h3>
      <form className="panel controls" aria-label="Create entitlement" onSubmit={(event) => void create(event)}>
        <Field label="Type">
          {(id) => (
            <select id={id} value={type} onChange={(e) => setType(e.target.value)}>
              {ENTITLEMENT_TYPES.map((option) => (
                <option key={option}>{option}</option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Feature key">
          {(id) => <input id={id} required value={featureKey} onChange={(e) => setFeatureKey(e.target.value)} />}
        </Field>
        {type === "metered" && (
          <>
            <Field label="Usage period">
              {(id) => (
                <select id={id} value={usagePeriod} onChange={(e) => setUsagePeriod(e.target.value)}>
                  {USAGE_PERIODS.map((period) => (
                    <option key={period} value={period}>
                      {period.toLowerCase()}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <Field label="Issue after reset (amount)">
              {(id) => (
                <input
                  id={id}
                  type="number"
                  min="0"
                  step="any"
                  value={issue}
                  onChange={(e) => setIssue(e.target.value)}
                />
              )}
            </Field>
            <label className="field">
              <span>
                <input type="checkbox" checked={softLimit} onChange={(e) => setSoftLimit(e.target.checked)} /> Soft
                limit (access stays after the balance is used up)
              </span>
            </label>
          </>
        )}
        {type === "static" && (
          <Field label="Config (JSON object)">
            {(id) => (
              <textarea
                id={id}
                rows={2}
                cols={40}
                required
                placeholder='{"seats": 5}'
                value={config}
                onChange={(e) => setConfig(e.target.value)}
              />
            )}
          </Field>
        )}
        <button type="submit">Create entitlement</button>
      </form>
      {message && (
        <p className={message.error ? "error" : "muted"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
    </>
  );
}

function EntitlementActions({
  client,
  customerId,
  featureKeys,
  onChanged,
}: {
  client: TallyClient;
  customerId: string;
  featureKeys: string[];
  onChanged: () => void;
}) {
  const [featureKey, setFeatureKey] = useState(featureKeys[0]);
  const [amount, setAmount] = useState("");
  const [priority, setPriority] = useState("1");
  const [expiryCount, setExpiryCount] = useState("1");
  const [expiryUnit, setExpiryUnit] = useState<string>("YEAR");
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  const target = { customerIdOrKey: customerId, entitlementIdOrFeatureKey: featureKey };

  const grant = async (event: FormEvent) => {
    event.preventDefault();
    try {
      await client.entitlements.createCustomerEntitlementGrant({
        ...target,
        grant: {
          amount: Number(amount),
          priority: Number(priority),
          effectiveAt: timestampFromDate(new Date()),
          expiration: { duration: expiryUnit, count: Number(expiryCount) },
        },
      });
      setMessage({ error: false, text: `Granted ${formatNumber(Number(amount))} on ${featureKey}.` });
      setAmount("");
      onChanged();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  const reset = async () => {
    if (!window.confirm(`Reset the usage of ${featureKey} now? The usage period starts again.`)) return;
    try {
      await client.entitlements.resetCustomerEntitlementUsage({
        ...target,
        effectiveAt: timestampFromDate(new Date()),
      });
      setMessage({ error: false, text: `Reset ${featureKey}.` });
      onChanged();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  return (
    <>
      <h3>Grant credits or reset usage</h3>
      <form className="panel controls" aria-label="Grant credits" onSubmit={(event) => void grant(event)}>
        <Field label="Entitlement">
          {(id) => (
            <select id={id} value={featureKey} onChange={(e) => setFeatureKey(e.target.value)}>
              {featureKeys.map((key) => (
                <option key={key}>{key}</option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Amount">
          {(id) => (
            <input
              id={id}
              type="number"
              min="0"
              step="any"
              required
              value={amount}
              onChange={(e) => setAmount(e.target.value)}
            />
          )}
        </Field>
        <Field label="Priority">
          {(id) => (
            <input
              id={id}
              type="number"
              min="0"
              step="1"
              value={priority}
              onChange={(e) => setPriority(e.target.value)}
            />
          )}
        </Field>
        <Field label="Expires after">
          {(id) => (
            <input
              id={id}
              type="number"
              min="1"
              step="1"
              value={expiryCount}
              onChange={(e) => setExpiryCount(e.target.value)}
            />
          )}
        </Field>
        <Field label="Unit">
          {(id) => (
            <select id={id} value={expiryUnit} onChange={(e) => setExpiryUnit(e.target.value)}>
              {EXPIRY_UNITS.map((unit) => (
                <option key={unit} value={unit}>
                  {unit.toLowerCase()}s
                </option>
              ))}
            </select>
          )}
        </Field>
        <button type="submit">Grant</button>
        <button type="button" className="secondary" onClick={() => void reset()}>
          Reset usage…
        </button>
      </form>
      {message && (
        <p className={message.error ? "error" : "muted"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
    </>
  );
}
