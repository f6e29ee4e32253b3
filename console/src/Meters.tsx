/** Meters: what each one counts (aggregation, event type, value and group-by JSONPaths); a key
 * that may write can create one (the server checks the JSONPaths and says what is wrong), with a
 * live preview of what the definition reads from a pasted sample event, or archive one (after a
 * confirmation). */
import { type FormEvent, useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { Field } from "./Field.tsx";
import { browserTimeZone, formatTime } from "./format.ts";
import type { Meter, PreviewMeterResponse } from "../../gen/ts/tally/v1/meters_pb.ts";
import { Problem } from "./Notice.tsx";

export function MetersPage({ client, canWrite }: { client: TallyClient; canWrite: boolean }) {
  const [meters, setMeters] = useState<Meter[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Bumped after a change: the list is read again.
  const [version, setVersion] = useState(0);
  const timeZone = browserTimeZone();

  const archive = async (meter: Meter) => {
    if (!window.confirm(`Archive ${meter.slug}? Its events stay; it stops counting them.`)) return;
    try {
      await client.meters.deleteMeter({ meterIdOrSlug: meter.id });
      setVersion((n) => n + 1);
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  useEffect(() => {
    client.meters.listMeters({}).then(
      (response) => setMeters([...response.items].sort((a, b) => a.slug.localeCompare(b.slug))),
      (failure) => setError(describeError(failure)),
    );
  }, [client, version]);

  return (
    <>
      <h2>Meters</h2>
      <Problem text={error} />
      {canWrite && <CreateMeter client={client} onCreated={() => setVersion((n) => n + 1)} />}
      <section aria-label="Meter list" data-state={meters ? "done" : "loading"}>
        <table aria-label="Meters">
          <thead>
            <tr>
              <th scope="col">Slug</th>
              <th scope="col">Name</th>
              <th scope="col">Aggregation</th>
              <th scope="col">Event type</th>
              <th scope="col">Value</th>
              <th scope="col">Group by</th>
              <th scope="col">Created ({timeZone})</th>
              {canWrite && <th scope="col">Archive</th>}
            </tr>
          </thead>
          <tbody>
            {meters?.map((meter) => (
              <tr key={meter.id} data-meter={meter.slug}>
                <td>{meter.slug}</td>
                <td>{meter.name}</td>
                <td>{meter.aggregation}</td>
                <td>{meter.eventType}</td>
                <td>
                  <code>{meter.valueProperty ?? ""}</code>
                </td>
                <td>
                  {Object.entries(meter.groupBy)
                    .sort()
                    .map(([key, path]) => (
                      <div key={key}>
                        {key}: <code>{path}</code>
                      </div>
                    ))}
                </td>
                <td>{formatTime(meter.createdAt, timeZone)}</td>
                {canWrite && (
                  <td>
                    <button type="button" className="secondary" onClick={() => void archive(meter)}>
                      Archive…
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}

const AGGREGATIONS = ["SUM", "COUNT", "UNIQUE_COUNT", "AVG", "MIN", "MAX", "LATEST"] as const;

function CreateMeter({ client, onCreated }: { client: TallyClient; onCreated: () => void }) {
  const [slug, setSlug] = useState("");
  const [eventType, setEventType] = useState("");
  const [aggregation, setAggregation] = useState<string>("SUM");
  const [valueProperty, setValueProperty] = useState("");
  const [groupBy, setGroupBy] = useState("");
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);

  const [sampleEvent, setSampleEvent] = useState("");
  // What create would send, minus the slug: the preview reads the same definition.
  const definition = {
    eventType,
    aggregation,
    valueProperty: aggregation === "COUNT" ? undefined : valueProperty,
    groupBy: parseGroupBy(groupBy),
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const meter = await client.meters.createMeter({ slug, ...definition });
      setMessage({ error: false, text: `Created ${meter.slug}.` });
      setSlug("");
      onCreated();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  return (
    <form className="panel controls" aria-label="Create meter" onSubmit={(event) => void submit(event)}>
      <Field label="Slug">
        {(id) => <input id={id} required value={slug} onChange={(e) => setSlug(e.target.value)} />}
      </Field>
      <Field label="Event type">
        {(id) => <input id={id} required value={eventType} onChange={(e) => setEventType(e.target.value)} />}
      </Field>
      <Field label="Aggregation">
        {(id) => (
          <select id={id} value={aggregation} onChange={(e) => setAggregation(e.target.value)}>
            {AGGREGATIONS.map((name) => (
              <option key={name}>{name}</option>
            ))}
          </select>
        )}
      </Field>
      <Field label="Value (JSONPath)">
        {(id) => (
          <input
            id={id}
            placeholder="$.tokens"
            disabled={aggregation === "COUNT"}
            value={valueProperty}
            onChange={(e) => setValueProperty(e.target.value)}
          />
        )}
      </Field>
      <Field label="Group by (key=JSONPath, ...)">
        {(id) => (
          <input id={id} placeholder="model=$.model" value={groupBy} onChange={(e) => setGroupBy(e.target.value)} />
        )}
      </Field>
      <Field label="Sample event (CloudEvent JSON, for the preview)">
        {(id) => (
          <textarea
            id={id}
            rows={4}
            cols={60}
            placeholder='{"specversion":"1.0","id":"1","source":"app","type":"prompt","subject":"customer-1","data":{"tokens":42}}'
            value={sampleEvent}
            onChange={(e) => setSampleEvent(e.target.value)}
          />
        )}
      </Field>
      <button type="submit">Create meter</button>
      {sampleEvent.trim() && <MeterPreview client={client} definition={definition} sampleEvent={sampleEvent} />}
      {message && (
        <p className={message.error ? "error" : "muted"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
    </form>
  );
}

/** "model=$.model, region=$.region" as a map; the server checks each key and path. */
function parseGroupBy(text: string): Record<string, string> {
  const pairs = text
    .split(",")
    .map((pair) => pair.trim())
    .filter(Boolean)
    .map((pair) => {
      const at = pair.indexOf("=");
      return at < 0 ? [pair, ""] : [pair.slice(0, at).trim(), pair.slice(at + 1).trim()];
    });
  return Object.fromEntries(pairs);
}

type Definition = {
  eventType: string;
  aggregation: string;
  valueProperty: string | undefined;
  groupBy: Record<string, string>;
};

// Long enough that typing a path does not send a call per key, short enough to feel live.
const PREVIEW_DELAY_MS = 300;

/** What the definition reads from the sample event, as the server answers it (PreviewMeter): the
 * JSONPath grammar and the extraction live on the server only, so the preview cannot disagree with
 * what create, ingest and queries do. */
function MeterPreview({
  client,
  definition,
  sampleEvent,
}: {
  client: TallyClient;
  definition: Definition;
  sampleEvent: string;
}) {
  const request = { ...definition, sampleEvent };
  const requestKey = JSON.stringify(request);
  const [answer, setAnswer] = useState<{ key: string; preview?: PreviewMeterResponse; error?: string } | null>(null);

  useEffect(() => {
    let current = true;
    const timer = window.setTimeout(() => {
      client.meters.previewMeter(JSON.parse(requestKey)).then(
        (preview) => current && setAnswer({ key: requestKey, preview }),
        (failure) => current && setAnswer({ key: requestKey, error: describeError(failure) }),
      );
    }, PREVIEW_DELAY_MS);
    return () => {
      current = false;
      window.clearTimeout(timer);
    };
  }, [client, requestKey]);

  // "done" only when the answer shown is for what the form holds now.
  const state = answer?.key === requestKey ? "done" : "pending";
  const preview = answer?.preview;
  const errors = preview
    ? [
        ...preview.meterErrors.map((e) => `${e.field}: ${e.message}`),
        ...preview.eventErrors.map((e) => `sample event ${e.field}: ${e.message}`),
      ]
    : [];
  return (
    <section aria-label="Meter preview" data-state={state} aria-live="polite" style={{ flexBasis: "100%" }}>
      <h3>Preview{state === "pending" && answer ? " (updating…)" : ""}</h3>
      {answer?.error && <p className="error">{answer.error}</p>}
      {errors.length > 0 && (
        <ul aria-label="Preview errors" className="error">
          {errors.map((text) => (
            <li key={text}>{text}</li>
          ))}
        </ul>
      )}
      {preview && errors.length === 0 && (
        <dl className="facts">
          <dt>Event type</dt>
          <dd data-preview="eventType">
            {preview.eventTypeMatches ? "matches" : `differs: this meter never sees the event`}
          </dd>
          <dt>Value</dt>
          <dd data-preview="value">
            {preview.value !== undefined
              ? String(preview.value)
              : (preview.uniqueValue ?? "(COUNT: each event counts 1)")}
          </dd>
          {Object.entries(preview.groupBy)
            .sort()
            .map(([key, value]) => (
              <GroupValue key={key} name={key} value={value} />
            ))}
          <dt>Counted</dt>
          <dd data-preview="skipReason">{preview.skipReason ?? "yes"}</dd>
        </dl>
      )}
    </section>
  );
}

function GroupValue({ name, value }: { name: string; value: string }) {
  return (
    <>
      <dt>Group {name}</dt>
      <dd data-preview-group={name}>{value}</dd>
    </>
  );
}
