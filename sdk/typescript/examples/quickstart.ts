/**
 * Ingest a few usage events and query a meter through Tally's TypeScript SDK (gRPC-web via Envoy).
 *
 *   cd sdk/typescript && npm run example -- [--server http://127.0.0.1:8888] [--api-key KEY]
 *
 * With `--protocol grpc --server http://127.0.0.1:50051` it talks gRPC to the gRPC port instead.
 *
 * Safe to run repeatedly: the events have fixed ids, and Tally drops duplicates of (source, id),
 * so the totals stay the same however often it runs.
 */

import { parseArgs } from "node:util";

import { Code, ConnectError, cloudEvent, createClient, type Protocol } from "@tally/sdk";

const METER = "sdk_ts_example_tokens";
const EVENTS: [id: string, subject: string, model: string, tokens: number][] = [
  ["sdk-ts-example-1", "customer-1", "gpt-4o", 100],
  ["sdk-ts-example-2", "customer-1", "gpt-4o-mini", 20],
  ["sdk-ts-example-3", "customer-2", "gpt-4o", 7],
];

const { values } = parseArgs({
  options: {
    server: { type: "string", default: process.env.TALLY_URL ?? "http://127.0.0.1:8888" },
    "api-key": { type: "string", default: process.env.TALLY_API_KEY },
    protocol: { type: "string", default: "grpc-web" },
  },
});

const tally = createClient(values.server!, {
  apiKey: values["api-key"],
  protocol: values.protocol as Protocol,
  timeoutMs: 10_000,
});

try {
  await tally.meters.getMeter({ meterIdOrSlug: METER });
} catch (error) {
  if (ConnectError.from(error).code !== Code.NotFound) {
    throw error;
  }
  await tally.meters.createMeter({
    slug: METER,
    aggregation: "SUM",
    eventType: "ts_example_prompt",
    valueProperty: "$.tokens",
    groupBy: { model: "$.model" },
    description: "Tokens per subject and model (TypeScript SDK example)",
  });
  console.log(`created meter ${METER}`);
}

const now = new Date();
const { accepted } = await tally.events.ingestEvents({
  events: EVENTS.map(([id, subject, model, tokens]) =>
    cloudEvent({ id, source: "sdk-ts-example", type: "ts_example_prompt", subject, time: now, data: { model, tokens } }),
  ),
});
console.log(`ingested ${accepted} events`);

// Usage counts once the sink has stored the events: at once on the embedded bus, after the sink's
// flush interval on Kafka.
const expected = EVENTS.reduce((sum, [, , , tokens]) => sum + tokens, 0);
let rows = (await tally.meters.queryMeter({ meterIdOrSlug: METER, groupBy: ["subject", "model"] })).data;
for (let i = 0; i < 50 && rows.reduce((sum, row) => sum + row.value, 0) < expected; i++) {
  await new Promise((resolve) => setTimeout(resolve, 200));
  rows = (await tally.meters.queryMeter({ meterIdOrSlug: METER, groupBy: ["subject", "model"] })).data;
}
const lines = rows.map((row) => `${row.subject ?? ""} ${row.groupBy.model ?? ""} ${row.value}`);
for (const line of lines.sort()) {
  console.log(line);
}
