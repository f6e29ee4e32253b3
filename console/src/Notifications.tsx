/**
 * Notifications: the channels (webhooks), the rules that send to them, and the delivery log (the
 * newest notification events with each channel's delivery state, polled every 5 s). A key that may
 * write can create a webhook channel and a balance-threshold rule, send a rule's test event and
 * resend an event. The server checks every field (the URL against its destination policy included).
 */
import { type FormEvent, useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { Field } from "./Field.tsx";
import { browserTimeZone, formatNumber, formatTime } from "./format.ts";
import type {
  NotificationChannel,
  NotificationEvent,
  NotificationRule,
} from "../../gen/ts/tally/v1/notifications_pb.ts";
import { Problem, Status } from "./Notice.tsx";

const POLL_MS = 5000;
const LOG_SIZE = 50;

export function NotificationsPage({ client, canWrite }: { client: TallyClient; canWrite: boolean }) {
  const [channels, setChannels] = useState<NotificationChannel[] | null>(null);
  const [rules, setRules] = useState<NotificationRule[] | null>(null);
  const [events, setEvents] = useState<NotificationEvent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  // Bumped after an action: the log is read again at once.
  const [version, setVersion] = useState(0);
  // Bumped after a create: channels and rules are read again.
  const [created, setCreated] = useState(0);
  const timeZone = browserTimeZone();

  useEffect(() => {
    Promise.all([
      client.notifications.listNotificationChannels({ pageSize: 1000 }),
      client.notifications.listNotificationRules({ pageSize: 1000 }),
    ]).then(
      ([channelList, ruleList]) => {
        setChannels(channelList.items);
        setRules(ruleList.items);
      },
      (failure) => setError(describeError(failure)),
    );
  }, [client, created]);

  useEffect(() => {
    let current = true;
    let timer: number | undefined;
    const read = async () => {
      try {
        const response = await client.notifications.listNotificationEvents({
          pageSize: LOG_SIZE,
          order: "DESC",
          orderBy: "createdAt",
        });
        if (!current) return;
        setEvents(response.items);
      } catch (failure) {
        if (current) setError(describeError(failure));
      }
      if (current) timer = window.setTimeout(() => void read(), POLL_MS);
    };
    void read();
    return () => {
      current = false;
      window.clearTimeout(timer);
    };
  }, [client, version]);

  const act = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      setMessage(what);
      setError(null);
      setVersion((n) => n + 1);
    } catch (failure) {
      setError(describeError(failure));
    }
  };
  const channelName = (id: string) => channels?.find((channel) => channel.id === id)?.name ?? id;

  return (
    <>
      <h2>Notifications</h2>
      <Problem text={error} />
      <Status text={message} />
      <h3>Channels</h3>
      {canWrite && <CreateChannel client={client} onCreated={() => setCreated((n) => n + 1)} />}
      <table aria-label="Channels">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Type</th>
            <th scope="col">URL</th>
            <th scope="col">Enabled</th>
          </tr>
        </thead>
        <tbody>
          {channels?.map((channel) => (
            <tr key={channel.id} data-channel={channel.name}>
              <td>{channel.name}</td>
              <td>{channel.type}</td>
              <td>{channel.url}</td>
              <td>{channel.disabled ? "no" : "yes"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Rules</h3>
      {canWrite && channels && (
        <CreateRule client={client} channels={channels} onCreated={() => setCreated((n) => n + 1)} />
      )}
      <table aria-label="Rules">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Type</th>
            <th scope="col">Thresholds</th>
            <th scope="col">Features</th>
            <th scope="col">Channels</th>
            {canWrite && <th scope="col">Test</th>}
          </tr>
        </thead>
        <tbody>
          {rules?.map((rule) => (
            <tr key={rule.id} data-rule={rule.id}>
              <td>{rule.name}</td>
              <td>{rule.type}</td>
              <td>
                {rule.thresholds
                  .map((threshold) =>
                    threshold.type.endsWith("percentage")
                      ? `${formatNumber(threshold.value)}% (${threshold.type})`
                      : `${formatNumber(threshold.value)} (${threshold.type})`,
                  )
                  .join(", ") || "—"}
              </td>
              <td>{rule.features.map((feature) => feature.key).join(", ") || "all"}</td>
              <td>{rule.channels.map((channel) => channelName(channel.id)).join(", ")}</td>
              {canWrite && (
                <td>
                  <button
                    type="button"
                    className="secondary"
                    onClick={() =>
                      void act(`Sent a test event for ${rule.name}.`, () =>
                        client.notifications.testNotificationRule({ ruleId: rule.id }),
                      )
                    }
                  >
                    Send test
                  </button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Delivery log</h3>
      <section aria-label="Delivery log" data-state={events ? "done" : "loading"}>
        <table aria-label="Deliveries">
          <thead>
            <tr>
              <th scope="col">Created ({timeZone})</th>
              <th scope="col">Type</th>
              <th scope="col">Rule</th>
              <th scope="col">Channel</th>
              <th scope="col">State</th>
              <th scope="col">Attempts</th>
              <th scope="col">Last answer</th>
              {canWrite && <th scope="col">Resend</th>}
            </tr>
          </thead>
          <tbody>
            {events?.flatMap((event) =>
              event.deliveryStatus.map((status, index) => {
                const last = status.attempts[status.attempts.length - 1];
                return (
                  <tr key={`${event.id}/${status.channel?.id}`} data-event={event.id}>
                    <td>{formatTime(event.createdAt, timeZone)}</td>
                    <td>{event.type}</td>
                    <td>{event.rule?.name}</td>
                    <td>{channelName(status.channel?.id ?? "")}</td>
                    <td data-column="state" className="reason">
                      {status.state}
                      {status.reason && <div className="muted">{status.reason}</div>}
                    </td>
                    <td className="num">{status.attempts.length}</td>
                    <td>{last?.response?.statusCode ? `HTTP ${last.response.statusCode}` : "—"}</td>
                    {canWrite && (
                      <td>
                        {index === 0 && (
                          <button
                            type="button"
                            className="secondary"
                            onClick={() =>
                              void act(`Resending ${event.id}.`, () =>
                                client.notifications.resendNotificationEvent({ eventId: event.id }),
                              )
                            }
                          >
                            Resend
                          </button>
                        )}
                      </td>
                    )}
                  </tr>
                );
              }),
            )}
          </tbody>
        </table>
      </section>
    </>
  );
}

type Message = { error: boolean; text: string } | null;

function Shown({ message }: { message: Message }) {
  return (
    message && (
      <p className={message.error ? "error" : "muted"} role={message.error ? "alert" : "status"}>
        {message.text}
      </p>
    )
  );
}

function CreateChannel({ client, onCreated }: { client: TallyClient; onCreated: () => void }) {
  const [name, setName] = useState("");
  const [url, setUrl] = useState("");
  const [secret, setSecret] = useState("");
  const [message, setMessage] = useState<Message>(null);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const channel = await client.notifications.createNotificationChannel({
        type: "WEBHOOK",
        name,
        url,
        // Empty: the server generates one (shown on the channel through the API).
        signingSecret: secret || undefined,
      });
      setMessage({ error: false, text: `Created channel ${channel.name}.` });
      setName("");
      setUrl("");
      setSecret("");
      onCreated();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  return (
    <>
      <form className="panel controls" aria-label="Create channel" onSubmit={(event) => void create(event)}>
        <Field label="Channel name">
          {(id) => <input id={id} required value={name} onChange={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Webhook URL">
          {(id) => (
            <input
              id={id}
              type="url"
              required
              placeholder="https://example.com/hook"
              value={url}
              onChange={(e) => setUrl(e.target.value)}
            />
          )}
        </Field>
        <Field label="Signing secret (empty: generated)">
          {(id) => <input id={id} autoComplete="off" value={secret} onChange={(e) => setSecret(e.target.value)} />}
        </Field>
        <button type="submit">Create channel</button>
      </form>
      <Shown message={message} />
    </>
  );
}

const THRESHOLD_TYPES = ["usage_percentage", "usage_value", "balance_value"] as const;

function CreateRule({
  client,
  channels,
  onCreated,
}: {
  client: TallyClient;
  channels: NotificationChannel[];
  onCreated: () => void;
}) {
  const [name, setName] = useState("");
  const [thresholds, setThresholds] = useState<{ value: string; type: string }[]>([
    { value: "", type: "usage_percentage" },
  ]);
  const [chosen, setChosen] = useState<string[]>([]);
  const [features, setFeatures] = useState("");
  const [message, setMessage] = useState<Message>(null);

  const setThreshold = (index: number, change: Partial<{ value: string; type: string }>) =>
    setThresholds(thresholds.map((threshold, i) => (i === index ? { ...threshold, ...change } : threshold)));

  const create = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const rule = await client.notifications.createNotificationRule({
        type: "entitlements.balance.threshold",
        name,
        channels: chosen,
        thresholds: thresholds.map((threshold) => ({ value: Number(threshold.value), type: threshold.type })),
        features: features
          .split(",")
          .map((feature) => feature.trim())
          .filter(Boolean),
      });
      setMessage({ error: false, text: `Created rule ${rule.name}.` });
      setName("");
      onCreated();
    } catch (failure) {
      setMessage({ error: true, text: describeError(failure) });
    }
  };

  return (
    <>
      <form
        className="panel controls"
        aria-label="Create balance threshold rule"
        onSubmit={(event) => void create(event)}
      >
        <Field label="Rule name">
          {(id) => <input id={id} required value={name} onChange={(e) => setName(e.target.value)} />}
        </Field>
        {thresholds.map((threshold, index) => (
          <span key={index} className="controls">
            <Field label={`Threshold ${index + 1}`}>
              {(id) => (
                <input
                  id={id}
                  type="number"
                  step="any"
                  required
                  value={threshold.value}
                  onChange={(e) => setThreshold(index, { value: e.target.value })}
                />
              )}
            </Field>
            <Field label={`Threshold ${index + 1} type`}>
              {(id) => (
                <select id={id} value={threshold.type} onChange={(e) => setThreshold(index, { type: e.target.value })}>
                  {THRESHOLD_TYPES.map((type) => (
                    <option key={type}>{type}</option>
                  ))}
                </select>
              )}
            </Field>
          </span>
        ))}
        <button
          type="button"
          className="secondary"
          onClick={() => setThresholds([...thresholds, { value: "", type: "usage_percentage" }])}
        >
          Add threshold
        </button>
        <fieldset>
          <legend>Channels</legend>
          {channels.map((channel) => (
            <label key={channel.id}>
              <input
                type="checkbox"
                checked={chosen.includes(channel.id)}
                onChange={(e) =>
                  setChosen(e.target.checked ? [...chosen, channel.id] : chosen.filter((id) => id !== channel.id))
                }
              />{" "}
              {channel.name}
            </label>
          ))}
        </fieldset>
        <Field label="Features (keys or IDs, comma-separated; empty: all)">
          {(id) => <input id={id} value={features} onChange={(e) => setFeatures(e.target.value)} />}
        </Field>
        <button type="submit">Create rule</button>
      </form>
      <Shown message={message} />
    </>
  );
}
