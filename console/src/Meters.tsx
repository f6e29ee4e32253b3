/** Meters: what each one counts (aggregation, event type, value and group-by JSONPaths). */
import { useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { browserTimeZone, formatTime } from "./format.ts";
import type { Meter } from "../../gen/ts/tally/v1/meters_pb.ts";

export function MetersPage({ client }: { client: TallyClient }) {
  const [meters, setMeters] = useState<Meter[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const timeZone = browserTimeZone();

  useEffect(() => {
    client.meters.listMeters({}).then(
      (response) => setMeters([...response.items].sort((a, b) => a.slug.localeCompare(b.slug))),
      (failure) => setError(describeError(failure)),
    );
  }, [client]);

  return (
    <>
      <h2>Meters</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
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
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}
