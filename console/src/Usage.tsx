/**
 * The usage explorer: one meter query (MeterService.QueryMeter, the same call as
 * GET /api/v1/meters/{meter}/query) drawn as a stacked chart and a table of the very same rows, and
 * downloadable as CSV. The browser never reads raw events: every number is the API's.
 */
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useMemo, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { Field } from "./Field.tsx";
import { browserTimeZone, formatNumber, formatTime, fromLocalInput, timeZones, toLocalInput } from "./format.ts";
import type { Meter, MeterQueryRow } from "../../gen/ts/tally/v1/meters_pb.ts";
import { UsageChart } from "./UsageChart.tsx";
import { usageCsv } from "./csv.ts";
import { Problem } from "./Notice.tsx";

const PRESETS = {
  "1h": { label: "Last hour", ms: 3_600_000 },
  "24h": { label: "Last 24 hours", ms: 86_400_000 },
  "7d": { label: "Last 7 days", ms: 7 * 86_400_000 },
  "30d": { label: "Last 30 days", ms: 30 * 86_400_000 },
} as const;
type Preset = keyof typeof PRESETS | "custom";
const WINDOW_SIZES = ["", "MINUTE", "HOUR", "DAY", "MONTH"] as const;
// Rows drawn in the table; the chart and the CSV have them all.
const TABLE_ROWS = 500;

export interface UsageQuery {
  meter: Meter;
  from: Date;
  to: Date;
  windowSize: string;
  timeZone: string;
  groupBy: string[];
  subjects: string[];
  customers: string[];
  // Exact values per group-by key (the query's filterGroupBy).
  filters: Record<string, string[]>;
}

export interface UsageResult {
  query: UsageQuery;
  rows: MeterQueryRow[];
}

/** The columns a row is grouped by, in the order the user picked them. */
export function groupColumns(query: UsageQuery): string[] {
  const columns = [...query.groupBy];
  // Filtering by subject or customer groups by it too (the API's rule).
  if (query.subjects.length && !columns.includes("subject")) columns.unshift("subject");
  if (query.customers.length && !columns.includes("customer_id")) columns.unshift("customer_id");
  return columns;
}

export function groupValue(row: MeterQueryRow, column: string): string {
  if (column === "subject") return row.subject ?? "";
  if (column === "customer_id") return row.customerId ?? "";
  return row.groupBy[column] ?? "";
}

function splitList(text: string): string[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

export function UsagePage({ client }: { client: TallyClient }) {
  const [meters, setMeters] = useState<Meter[] | null>(null);
  const [meterSlug, setMeterSlug] = useState("");
  const [preset, setPreset] = useState<Preset>("24h");
  const [timeZone, setTimeZone] = useState(browserTimeZone());
  const [customFrom, setCustomFrom] = useState(() =>
    toLocalInput(new Date(Date.now() - 86_400_000), browserTimeZone()),
  );
  const [customTo, setCustomTo] = useState(() => toLocalInput(new Date(), browserTimeZone()));
  const [windowSize, setWindowSize] = useState<string>("HOUR");
  const [groupBy, setGroupBy] = useState<string[]>([]);
  const [subjects, setSubjects] = useState("");
  const [customers, setCustomers] = useState("");
  const [filters, setFilters] = useState<Record<string, string>>({});
  const [refreshes, setRefreshes] = useState(0);
  const [result, setResult] = useState<UsageResult | null>(null);
  const [status, setStatus] = useState<"idle" | "loading" | "done" | "error">("idle");
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    client.meters.listMeters({}).then(
      (response) => {
        setMeters(response.items);
        setMeterSlug((current) => current || response.items[0]?.slug || "");
      },
      (failure) => setError(describeError(failure)),
    );
  }, [client]);

  const meter = meters?.find((candidate) => candidate.slug === meterSlug);

  useEffect(() => {
    if (!meter) return;
    let range: { from: Date; to: Date };
    try {
      range =
        preset === "custom"
          ? { from: fromLocalInput(customFrom, timeZone), to: fromLocalInput(customTo, timeZone) }
          : { from: new Date(Date.now() - PRESETS[preset].ms), to: new Date() };
    } catch (failure) {
      setStatus("error");
      setError(String(failure));
      return;
    }
    const query: UsageQuery = {
      meter,
      ...range,
      windowSize,
      timeZone,
      groupBy: groupBy.filter((key) => key === "subject" || key === "customer_id" || key in meter.groupBy),
      subjects: splitList(subjects),
      customers: splitList(customers),
      filters: Object.fromEntries(
        Object.keys(meter.groupBy)
          .sort()
          .map((key) => [key, splitList(filters[key] ?? "")] as const)
          .filter(([, values]) => values.length > 0),
      ),
    };
    let current = true;
    setStatus("loading");
    client.meters
      .queryMeter({
        meterIdOrSlug: meter.slug,
        from: timestampFromDate(query.from),
        to: timestampFromDate(query.to),
        windowSize: query.windowSize || undefined,
        windowTimeZone: query.timeZone,
        groupBy: query.groupBy,
        subject: query.subjects,
        filterCustomerId: query.customers,
        filterGroupBy: Object.keys(query.filters).length ? query.filters : undefined,
      })
      .then(
        (response) => {
          if (!current) return;
          setResult({ query, rows: sortRows(response.data, groupColumns(query)) });
          setError(null);
          setStatus("done");
        },
        (failure) => {
          if (!current) return;
          setError(describeError(failure));
          setStatus("error");
        },
      );
    return () => {
      current = false;
    };
  }, [
    client,
    meter,
    preset,
    customFrom,
    customTo,
    timeZone,
    windowSize,
    groupBy,
    subjects,
    customers,
    filters,
    refreshes,
  ]);

  const zones = useMemo(() => timeZones(), []);
  const groupChoices = meter ? [...Object.keys(meter.groupBy).sort(), "subject", "customer_id"] : [];

  const usePreset = (value: Preset) => {
    if (value === "custom" && preset !== "custom") {
      // Start the custom range from the preset that was showing.
      const ms = PRESETS[preset].ms;
      setCustomFrom(toLocalInput(new Date(Date.now() - ms), timeZone));
      setCustomTo(toLocalInput(new Date(), timeZone));
    }
    setPreset(value);
  };

  return (
    <>
      <h2>Usage</h2>
      <Problem text={error} />
      {meters !== null && meters.length === 0 && (
        <p className="panel">No meters yet: create one with the API (POST /api/v1/meters) and ingest events.</p>
      )}
      <form className="panel controls" aria-label="Usage query" onSubmit={(event) => event.preventDefault()}>
        <Field label="Meter">
          {(id) => (
            <select id={id} value={meterSlug} onChange={(event) => setMeterSlug(event.target.value)}>
              {meters?.map((candidate) => (
                <option key={candidate.id} value={candidate.slug}>
                  {candidate.name || candidate.slug}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Time range">
          {(id) => (
            <select id={id} value={preset} onChange={(event) => usePreset(event.target.value as Preset)}>
              {Object.entries(PRESETS).map(([value, { label }]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
              <option value="custom">Custom</option>
            </select>
          )}
        </Field>
        {preset === "custom" && (
          <>
            <Field label="From">
              {(id) => (
                <input
                  id={id}
                  type="datetime-local"
                  value={customFrom}
                  onChange={(event) => setCustomFrom(event.target.value)}
                />
              )}
            </Field>
            <Field label="To">
              {(id) => (
                <input
                  id={id}
                  type="datetime-local"
                  value={customTo}
                  onChange={(event) => setCustomTo(event.target.value)}
                />
              )}
            </Field>
          </>
        )}
        <Field label="Time zone">
          {(id) => (
            <>
              <input id={id} list="time-zones" value={timeZone} onChange={(event) => setTimeZone(event.target.value)} />
              <datalist id="time-zones">
                {zones.map((zone) => (
                  <option key={zone} value={zone} />
                ))}
              </datalist>
            </>
          )}
        </Field>
        <Field label="Window size">
          {(id) => (
            <select id={id} value={windowSize} onChange={(event) => setWindowSize(event.target.value)}>
              {WINDOW_SIZES.map((size) => (
                <option key={size} value={size}>
                  {size ? size.toLowerCase() : "whole range"}
                </option>
              ))}
            </select>
          )}
        </Field>
        <fieldset>
          <legend>Group by</legend>
          {groupChoices.map((key) => (
            <label key={key}>
              <input
                type="checkbox"
                checked={groupBy.includes(key)}
                onChange={(event) =>
                  setGroupBy((current) => (event.target.checked ? [...current, key] : current.filter((k) => k !== key)))
                }
              />
              {key}
            </label>
          ))}
        </fieldset>
        {meter &&
          Object.keys(meter.groupBy)
            .sort()
            .map((key) => (
              <Field key={key} label={`${key} is one of`}>
                {(id) => (
                  <input
                    id={id}
                    value={filters[key] ?? ""}
                    onChange={(event) => setFilters((current) => ({ ...current, [key]: event.target.value }))}
                  />
                )}
              </Field>
            ))}
        <Field label="Subjects (comma-separated)">
          {(id) => <input id={id} value={subjects} onChange={(event) => setSubjects(event.target.value)} />}
        </Field>
        <Field label="Customers (IDs or keys)">
          {(id) => <input id={id} value={customers} onChange={(event) => setCustomers(event.target.value)} />}
        </Field>
        <button type="button" className="secondary" onClick={() => setRefreshes((n) => n + 1)}>
          Refresh
        </button>
      </form>
      {/* data-query names the query the shown result answers, so a reader (or a test) can tell a
          fresh result from the previous one. */}
      <section
        aria-label="Usage result"
        aria-busy={status === "loading"}
        data-state={status}
        data-query={result ? describeQuery(result.query) : undefined}
      >
        {result && <UsageResultView result={result} />}
      </section>
    </>
  );
}

/** "<meter> <from> <to> <window size> <time zone> <group-by,...>[ <key>=<value>|<value>...]", times
 * in RFC 3339 UTC. */
export function describeQuery(query: UsageQuery): string {
  const from = query.from.toISOString().replace(".000Z", "Z");
  const to = query.to.toISOString().replace(".000Z", "Z");
  const filters = Object.entries(query.filters).map(([key, values]) => `${key}=${values.join("|")}`);
  return [
    query.meter.slug,
    from,
    to,
    query.windowSize || "-",
    query.timeZone,
    query.groupBy.join(",") || "-",
    ...filters,
  ].join(" ");
}

function sortRows(rows: MeterQueryRow[], columns: string[]): MeterQueryRow[] {
  const key = (row: MeterQueryRow) =>
    [
      row.windowStart ? timestampDate(row.windowStart).toISOString() : "",
      ...columns.map((c) => groupValue(row, c)),
    ].join("\u0000");
  return [...rows].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function UsageResultView({ result }: { result: UsageResult }) {
  const { query, rows } = result;
  const columns = groupColumns(query);
  const meter = query.meter;
  const unit = meter.aggregation === "COUNT" ? "events" : `${meter.aggregation} of ${meter.valueProperty ?? ""}`;
  // Totals only where adding rows means something.
  const additive = meter.aggregation === "SUM" || meter.aggregation === "COUNT";
  const total = rows.reduce((sum, row) => sum + row.value, 0);

  const download = () => {
    const blob = new Blob([usageCsv(result)], { type: "text/csv" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${meter.slug}-usage.csv`;
    link.click();
    URL.revokeObjectURL(link.href);
  };

  return (
    <>
      <div className="panel">
        <UsageChart result={result} />
      </div>
      <div className="panel">
        <p className="muted">
          {rows.length} rows, {formatTime(query.from, query.timeZone)} to {formatTime(query.to, query.timeZone)} (
          {query.timeZone}).{" "}
          <button type="button" className="secondary" onClick={download}>
            Download CSV
          </button>
        </p>
        <table aria-label="Usage rows">
          <thead>
            <tr>
              {query.windowSize && <th scope="col">Window start</th>}
              {query.windowSize && <th scope="col">Window end</th>}
              {columns.map((column) => (
                <th scope="col" key={column}>
                  {column}
                </th>
              ))}
              <th scope="col" className="num">
                Value ({unit})
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.slice(0, TABLE_ROWS).map((row, index) => (
              <tr key={index}>
                {query.windowSize && <td>{formatTime(row.windowStart, query.timeZone)}</td>}
                {query.windowSize && <td>{formatTime(row.windowEnd, query.timeZone)}</td>}
                {columns.map((column) => (
                  <td key={column}>{groupValue(row, column)}</td>
                ))}
                <td className="num" data-value={row.value}>
                  {formatNumber(row.value)}
                </td>
              </tr>
            ))}
          </tbody>
          {additive && (
            <tfoot>
              <tr>
                <td colSpan={columns.length + (query.windowSize ? 2 : 0)}>Total</td>
                <td className="num" data-value={total}>
                  {formatNumber(total)}
                </td>
              </tr>
            </tfoot>
          )}
        </table>
        {rows.length > TABLE_ROWS && (
          <p className="muted">
            Showing the first {TABLE_ROWS} of {rows.length} rows; the chart and the CSV have all of them.
          </p>
        )}
      </div>
    </>
  );
}
