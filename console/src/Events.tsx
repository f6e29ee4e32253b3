/**
 * Events: a live tail of the namespace's newest events (EventService.ListEvents, polled while "Live"
 * is on; at most 100 per read, never a bulk download), filtered by subject or ID. An event that no
 * meter counts stands out: one whose type no meter has, or whose values a meter could not read
 * (the server's validation error). A key that may ingest can send an event (IngestEvents): the data
 * goes as the JSON text typed, so a refusal is the server's own (the console does not parse it).
 */
import { type FormEvent, useEffect, useState } from "react";

import { cloudEvent } from "../../sdk/typescript/src/client.ts";
import { describeError, type TallyClient } from "./api.ts";
import { Field } from "./Field.tsx";
import { browserTimeZone, formatTime } from "./format.ts";
import type { IngestedEvent } from "../../gen/ts/tally/v1/events_pb.ts";
import { Problem } from "./Notice.tsx";

const POLL_MS = 2000;
const LIMIT = 100;

function payload(event: IngestedEvent): string {
  const data = event.event?.payload;
  return data?.case === "data" ? JSON.stringify(data.value) : "";
}

export function EventsPage({ client, canIngest }: { client: TallyClient; canIngest: boolean }) {
  const [subject, setSubject] = useState("");
  const [id, setId] = useState("");
  const [live, setLive] = useState(true);
  const [events, setEvents] = useState<IngestedEvent[] | null>(null);
  const [meterTypes, setMeterTypes] = useState<Set<string> | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Bumped after a send: the tail is read again at once.
  const [version, setVersion] = useState(0);
  const timeZone = browserTimeZone();

  useEffect(() => {
    client.meters.listMeters({}).then(
      (response) => setMeterTypes(new Set(response.items.map((meter) => meter.eventType))),
      (failure) => setError(describeError(failure)),
    );
  }, [client]);

  useEffect(() => {
    let current = true;
    let timer: number | undefined;
    const read = async () => {
      try {
        const response = await client.events.listEvents({
          subject: subject || undefined,
          id: id || undefined,
          limit: LIMIT,
        });
        if (!current) return;
        setEvents(response.items);
        setError(null);
      } catch (failure) {
        if (current) setError(describeError(failure));
      }
      // The next read starts after this one ended, so a slow server is never asked twice at once.
      if (current && live) timer = window.setTimeout(() => void read(), POLL_MS);
    };
    void read();
    return () => {
      current = false;
      window.clearTimeout(timer);
    };
  }, [client, subject, id, live, version]);

  return (
    <>
      <h2>Events</h2>
      <Problem text={error} />
      {canIngest && <SendEvent client={client} onSent={() => setVersion((n) => n + 1)} />}
      <div className="panel controls">
        <Field label="Subject contains">
          {(fieldId) => <input id={fieldId} value={subject} onChange={(e) => setSubject(e.target.value)} />}
        </Field>
        <Field label="ID contains">
          {(fieldId) => <input id={fieldId} value={id} onChange={(e) => setId(e.target.value)} />}
        </Field>
        <label className="field">
          <span>
            <input type="checkbox" checked={live} onChange={(e) => setLive(e.target.checked)} /> Live (every{" "}
            {POLL_MS / 1000} s)
          </span>
        </label>
        <span className="muted">Newest {LIMIT} events of the last 72 hours.</span>
      </div>
      <section aria-label="Event list" data-state={events && meterTypes ? "done" : "loading"}>
        <table aria-label="Events">
          <thead>
            <tr>
              <th scope="col">Time ({timeZone})</th>
              <th scope="col">Type</th>
              <th scope="col">Subject</th>
              <th scope="col">ID</th>
              <th scope="col">Data</th>
              <th scope="col">Counted?</th>
            </tr>
          </thead>
          <tbody>
            {meterTypes &&
              events?.map((ingested) => {
                const event = ingested.event;
                const problem =
                  ingested.validationError ??
                  (event && !meterTypes.has(event.type) ? "no meter counts events of this type" : undefined);
                return (
                  <tr
                    key={`${event?.source}/${event?.id}`}
                    data-event-id={event?.id}
                    className={problem ? "problem" : undefined}
                  >
                    <td>{formatTime(event?.time, timeZone)}</td>
                    <td>{event?.type}</td>
                    <td>{event?.subject}</td>
                    <td>{event?.id}</td>
                    <td className="data">{payload(ingested)}</td>
                    <td className="reason">{problem ? <strong className="access-no">{problem}</strong> : "yes"}</td>
                  </tr>
                );
              })}
          </tbody>
        </table>
      </section>
    </>
  );
}

const encoder = new TextEncoder();

function SendEvent({ client, onSent }: { client: TallyClient; onSent: () => void }) {
  const [type, setType] = useState("");
  const [subject, setSubject] = useState("");
  const [time, setTime] = useState("");
  const [data, setData] = useState("");
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);

  const send = async (event: FormEvent) => {
    event.preventDefault();
    // The id is fixed before the call, so the SDK's retry of a lost answer is deduplicated.
    const sent = cloudEvent({
      type,
      subject,
      source: "tally-console",
      // A local time as the browser's zone reads it; empty is the moment of sending.
      time: time ? new Date(time) : new Date(),
    });
    if (data.trim()) sent.payload = { case: "dataJson", value: encoder.encode(data) };
    try {
      await client.events.ingestEvents({ events: [sent] });
      setMessage({ error: false, text: `Sent ${sent.id}.` });
      onSent();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  return (
    <form className="panel controls" aria-label="Send event" onSubmit={(event) => void send(event)}>
      <Field label="Type">
        {(fieldId) => <input id={fieldId} required value={type} onChange={(e) => setType(e.target.value)} />}
      </Field>
      <Field label="Subject">
        {(fieldId) => <input id={fieldId} required value={subject} onChange={(e) => setSubject(e.target.value)} />}
      </Field>
      <Field label="Time (empty: now)">
        {(fieldId) => (
          <input id={fieldId} type="datetime-local" step="1" value={time} onChange={(e) => setTime(e.target.value)} />
        )}
      </Field>
      <Field label="Data (JSON object)">
        {(fieldId) => (
          <textarea
            id={fieldId}
            rows={2}
            cols={40}
            placeholder='{"tokens": 42, "model": "gpt-4o"}'
            value={data}
            onChange={(e) => setData(e.target.value)}
          />
        )}
      </Field>
      <button type="submit">Send event</button>
      {message && (
        <p className={message.error ? "error" : "muted"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
    </form>
  );
}
