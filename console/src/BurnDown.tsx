/**
 * A metered entitlement's balance over its current usage period, from the history API
 * (GetCustomerEntitlementHistory's burn-down: segments of time with the balance at their start and
 * end, split where a grant takes effect or the usage is reset), with the grants marked where they
 * took effect.
 */
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";
import { useEffect, useRef, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { formatNumber, formatTime } from "./format.ts";
import type { Entitlement, EntitlementHistory, Grant } from "../../gen/ts/tally/v1/entitlements_pb.ts";
import { Problem } from "./Notice.tsx";

Chart.register(LineController, LineElement, PointElement, CategoryScale, LinearScale, Legend, Tooltip);

const DAY_MS = 86_400_000;

export function BurnDown({
  client,
  customerId,
  entitlement,
  grants,
  timeZone,
}: {
  client: TallyClient;
  customerId: string;
  entitlement: Entitlement;
  grants: Grant[];
  timeZone: string;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [history, setHistory] = useState<EntitlementHistory | null>(null);
  const [error, setError] = useState<string | null>(null);
  const start = entitlement.currentUsagePeriod?.from;
  // Daily windows over the period so far; hourly for the first two days.
  const from = start ? timestampDate(start) : new Date(Date.now() - 30 * DAY_MS);
  // The history API also answers windowed usage; the burn-down segments are what is drawn here.
  const windowSize = Date.now() - from.getTime() > 2 * DAY_MS ? "DAY" : "HOUR";

  useEffect(() => {
    client.entitlements
      .getCustomerEntitlementHistory({
        customerIdOrKey: customerId,
        entitlementIdOrFeatureKey: entitlement.id,
        from: timestampFromDate(from),
        to: timestampFromDate(new Date()),
        windowSize,
        windowTimeZone: timeZone,
      })
      .then(setHistory, (failure) => setError(describeError(failure)));
    // `from` is left out on purpose: it is derived from the entitlement (a dependency) and is a new
    // Date on every render.
  }, [client, customerId, entitlement, windowSize, timeZone]);

  useEffect(() => {
    if (!canvas.current || !history) return;
    // Two points per segment, its start and its end; a grant shows as a step up between segments.
    const points: { at: Date; balance: number }[] = [];
    for (const segment of history.burndownHistory) {
      if (!segment.period?.from || !segment.period?.to) continue;
      points.push({ at: timestampDate(segment.period.from), balance: segment.balanceAtStart });
      points.push({ at: timestampDate(segment.period.to), balance: segment.balanceAtEnd });
    }
    const labels = points.map((point) => formatTime(point.at, timeZone));
    const balances = points.map((point) => point.balance);
    // A grant is marked on the last point at or before it took effect: the start of the segment it
    // opened (its step up), where segments meet.
    const marks: (number | null)[] = points.map(() => null);
    const notes: string[] = points.map(() => "");
    for (const grant of grants) {
      if (!grant.effectiveAt) continue;
      const at = timestampDate(grant.effectiveAt).getTime();
      let index = -1;
      points.forEach((point, i) => {
        if (point.at.getTime() <= at) index = i;
      });
      if (index >= 0) {
        marks[index] = balances[index];
        notes[index] = `${notes[index]} +${formatNumber(grant.amount)}`.trim();
      }
    }
    const chart = new Chart(canvas.current, {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "Balance", data: balances, borderColor: "#2456c9", pointRadius: 2 },
          {
            label: "Grant",
            data: marks,
            showLine: false,
            pointStyle: "triangle",
            pointRadius: 7,
            backgroundColor: "#1e7a3c",
            borderColor: "#1e7a3c",
          },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true } },
        plugins: {
          tooltip: {
            callbacks: {
              label: (item) =>
                item.datasetIndex === 1
                  ? `grant ${notes[item.dataIndex]}`
                  : `balance ${formatNumber(item.parsed.y ?? 0)}`,
            },
          },
        },
      },
    });
    return () => chart.destroy();
  }, [history, grants, timeZone]);

  return (
    <figure className="panel" data-feature={entitlement.featureKey} data-state={history ? "done" : "loading"}>
      <figcaption>
        {entitlement.featureKey}: balance since {formatTime(from, timeZone)} ({timeZone})
      </figcaption>
      <Problem text={error} />
      <div className="chart">
        <canvas ref={canvas} role="img" aria-label={`Burn-down of ${entitlement.featureKey}`} />
      </div>
    </figure>
  );
}
