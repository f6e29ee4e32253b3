/**
 * Notifications: the channels (webhooks), the rules that send to them, and the delivery log (the
 * newest notification events with each channel's delivery state, polled every 5 s). A key that may
 * write can send a rule's test event and resend an event.
 */
import { useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { browserTimeZone, formatNumber, formatTime } from "./format.ts";
import type {
  NotificationChannel,
  NotificationEvent,
  NotificationRule,
} from "../../gen/ts/tally/v1/notifications_pb.ts";

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
  }, [client]);

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
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {message && (
        <p className="muted" role="status">
          {message}
        </p>
      )}
      <h3>Channels</h3>
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
            <tr key={channel.id}>
              <td>{channel.name}</td>
              <td>{channel.type}</td>
              <td>{channel.url}</td>
              <td>{channel.disabled ? "no" : "yes"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Rules</h3>
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
