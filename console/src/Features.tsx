/** Features: what customers are entitled to, most of them backed by a meter; a key that may write
 * can create one or archive one (after a confirmation). */
import { type FormEvent, useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { Field } from "./Field.tsx";
import { browserTimeZone, formatTime } from "./format.ts";
import type { Feature } from "../../gen/ts/tally/v1/features_pb.ts";
import { Problem, Status } from "./Notice.tsx";

export function FeaturesPage({ client, canWrite }: { client: TallyClient; canWrite: boolean }) {
  const [features, setFeatures] = useState<Feature[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  const [key, setKey] = useState("");
  const [name, setName] = useState("");
  const [meterSlug, setMeterSlug] = useState("");
  const [message, setMessage] = useState<string | null>(null);
  const timeZone = browserTimeZone();

  useEffect(() => {
    client.features.listFeatures({ pageSize: 1000 }).then(
      (response) => setFeatures([...response.items].sort((a, b) => a.key.localeCompare(b.key))),
      (failure) => setError(describeError(failure)),
    );
  }, [client, version]);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const feature = await client.features.createFeature({
        key,
        name: name || key,
        meterSlug: meterSlug || undefined,
      });
      setMessage(`Created ${feature.key}.`);
      setError(null);
      setKey("");
      setName("");
      setVersion((n) => n + 1);
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  const archive = async (feature: Feature) => {
    if (!window.confirm(`Archive ${feature.key}? Entitlements to it stay until they are removed.`)) return;
    try {
      await client.features.deleteFeature({ featureId: feature.id });
      setVersion((n) => n + 1);
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  return (
    <>
      <h2>Features</h2>
      <Problem text={error} />
      <Status text={message} />
      {canWrite && (
        <form className="panel controls" aria-label="Create feature" onSubmit={(event) => void create(event)}>
          <Field label="Key">
            {(id) => <input id={id} required value={key} onChange={(e) => setKey(e.target.value)} />}
          </Field>
          <Field label="Name">{(id) => <input id={id} value={name} onChange={(e) => setName(e.target.value)} />}</Field>
          <Field label="Meter (slug; empty for a boolean or static feature)">
            {(id) => <input id={id} value={meterSlug} onChange={(e) => setMeterSlug(e.target.value)} />}
          </Field>
          <button type="submit">Create feature</button>
        </form>
      )}
      <section aria-label="Feature list" data-state={features ? "done" : "loading"}>
        <table aria-label="Features">
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">Name</th>
              <th scope="col">Meter</th>
              <th scope="col">Created ({timeZone})</th>
              {canWrite && <th scope="col">Archive</th>}
            </tr>
          </thead>
          <tbody>
            {features?.map((feature) => (
              <tr key={feature.id} data-feature={feature.key}>
                <td>{feature.key}</td>
                <td>{feature.name}</td>
                <td>{feature.meterSlug ?? "—"}</td>
                <td>{formatTime(feature.createdAt, timeZone)}</td>
                {canWrite && (
                  <td>
                    <button type="button" className="secondary" onClick={() => void archive(feature)}>
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
