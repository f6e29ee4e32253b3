/**
 * The part of Tally's TypeScript client that runs anywhere (Node and browsers): typed clients for
 * every Tally service over any Connect transport, the bearer and retry interceptors, and the
 * CloudEvent builder. index.ts adds Node's transports; the console (console/) adds the browser's
 * (@connectrpc/connect-web), so both share this one client.
 */

import { create, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createClient as createServiceClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";

import { ApiKeyService, CallerService } from "../../../gen/ts/tally/v1/apikeys_pb.js";
import { AppService } from "../../../gen/ts/tally/v1/apps_pb.js";
import { BillingProfileService } from "../../../gen/ts/tally/v1/billing_pb.js";
import { AddonService, CurrencyService, PlanAddonService, PlanService } from "../../../gen/ts/tally/v1/catalog_pb.js";
import { CustomerService, SubjectService } from "../../../gen/ts/tally/v1/customers_pb.js";
import { EntitlementService } from "../../../gen/ts/tally/v1/entitlements_pb.js";
import { type CloudEvent, CloudEventSchema, EventService } from "../../../gen/ts/tally/v1/events_pb.js";
import { FeatureService } from "../../../gen/ts/tally/v1/features_pb.js";
import { CustomInvoicingService, InvoiceService } from "../../../gen/ts/tally/v1/invoices_pb.js";
import { MeterService } from "../../../gen/ts/tally/v1/meters_pb.js";
import { NotificationService } from "../../../gen/ts/tally/v1/notifications_pb.js";
import { PortalService } from "../../../gen/ts/tally/v1/portal_pb.js";
import { SubscriptionService } from "../../../gen/ts/tally/v1/subscriptions_pb.js";

// The generated messages, schemas and service descriptors of tally.v1, for requests and results.
export * from "../../../gen/ts/tally/v1/apikeys_pb.js";
export * from "../../../gen/ts/tally/v1/apps_pb.js";
export * from "../../../gen/ts/tally/v1/billing_pb.js";
export * from "../../../gen/ts/tally/v1/catalog_pb.js";
export * from "../../../gen/ts/tally/v1/customers_pb.js";
export * from "../../../gen/ts/tally/v1/entitlements_pb.js";
export * from "../../../gen/ts/tally/v1/events_pb.js";
export * from "../../../gen/ts/tally/v1/features_pb.js";
export * from "../../../gen/ts/tally/v1/invoices_pb.js";
export * from "../../../gen/ts/tally/v1/subscriptions_pb.js";
export * from "../../../gen/ts/tally/v1/meters_pb.js";
export * from "../../../gen/ts/tally/v1/notifications_pb.js";
export * from "../../../gen/ts/tally/v1/portal_pb.js";
export { Code, ConnectError };

/** How calls travel. */
export type Protocol =
  /** gRPC-web over HTTP/1.1 to Tally's REST port (Envoy, default 8888), which turns it into gRPC. */
  | "grpc-web"
  /** gRPC over HTTP/2, straight to Tally's gRPC port (default 50051). */
  | "grpc";

export interface RetryPolicy {
  /** Attempts per call, the first included; 1 turns retries off. */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, initialBackoffMs: 100, maxBackoffMs: 5000, multiplier: 2 };
export const NO_RETRY: RetryPolicy = { maxAttempts: 1, initialBackoffMs: 0, maxBackoffMs: 0, multiplier: 1 };

export interface ClientOptions {
  /** An API key (`tally apikeys create`); sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Default "grpc-web" (through Envoy); "grpc" needs the gRPC port's URL. */
  protocol?: Protocol;
  /** Deadline of each call unless the call sets `timeoutMs`; default 10 000. */
  timeoutMs?: number;
  /** Retries on UNAVAILABLE for calls that are safe to repeat (see README); default DEFAULT_RETRY. */
  retry?: RetryPolicy;
  /** Further interceptors, run inside the SDK's own. */
  interceptors?: Interceptor[];
  /** A transport of your own (e.g. @connectrpc/connect-web in a browser); replaces `protocol`. */
  transport?: Transport;
}

export interface TallyClient {
  readonly events: Client<typeof EventService>;
  readonly meters: Client<typeof MeterService>;
  readonly customers: Client<typeof CustomerService>;
  readonly subjects: Client<typeof SubjectService>;
  readonly features: Client<typeof FeatureService>;
  readonly entitlements: Client<typeof EntitlementService>;
  readonly notifications: Client<typeof NotificationService>;
  readonly apiKeys: Client<typeof ApiKeyService>;
  readonly caller: Client<typeof CallerService>;
  readonly portal: Client<typeof PortalService>;
  readonly apps: Client<typeof AppService>;
  readonly billingProfiles: Client<typeof BillingProfileService>;
  readonly invoices: Client<typeof InvoiceService>;
  readonly customInvoicing: Client<typeof CustomInvoicingService>;
  readonly plans: Client<typeof PlanService>;
  readonly addons: Client<typeof AddonService>;
  readonly planAddons: Client<typeof PlanAddonService>;
  readonly currencies: Client<typeof CurrencyService>;
  readonly subscriptions: Client<typeof SubscriptionService>;
  readonly transport: Transport;
}

/** Clients for every Tally service over a transport the caller made (and configured: interceptors, deadline). */
export function clientsOver(transport: Transport): TallyClient {
  return {
    events: createServiceClient(EventService, transport),
    meters: createServiceClient(MeterService, transport),
    customers: createServiceClient(CustomerService, transport),
    subjects: createServiceClient(SubjectService, transport),
    features: createServiceClient(FeatureService, transport),
    entitlements: createServiceClient(EntitlementService, transport),
    notifications: createServiceClient(NotificationService, transport),
    apiKeys: createServiceClient(ApiKeyService, transport),
    caller: createServiceClient(CallerService, transport),
    portal: createServiceClient(PortalService, transport),
    apps: createServiceClient(AppService, transport),
    billingProfiles: createServiceClient(BillingProfileService, transport),
    invoices: createServiceClient(InvoiceService, transport),
    customInvoicing: createServiceClient(CustomInvoicingService, transport),
    plans: createServiceClient(PlanService, transport),
    addons: createServiceClient(AddonService, transport),
    planAddons: createServiceClient(PlanAddonService, transport),
    currencies: createServiceClient(CurrencyService, transport),
    subscriptions: createServiceClient(SubscriptionService, transport),
    transport,
  };
}

/** Sends `Authorization: Bearer <key>` on every call. */
export function bearerInterceptor(apiKey: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
}

// Safe to repeat: reads, and ingest (ids are fixed before the first attempt, and Tally drops
// duplicates of (source, id)). Creates, updates and deletes are not retried.
const RETRYABLE = /^(Get|List|Query|Ingest(Events|CloudEvents)$)/;

/** Retries unary calls that are safe to repeat on UNAVAILABLE, with capped exponential backoff and jitter. */
export function retryInterceptor(policy: RetryPolicy): Interceptor {
  return (next) => async (req) => {
    if (req.stream || policy.maxAttempts <= 1 || !RETRYABLE.test(req.method.name)) {
      return next(req);
    }
    let backoff = policy.initialBackoffMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (error) {
        const code = ConnectError.from(error).code;
        if (code !== Code.Unavailable || attempt >= policy.maxAttempts || req.signal.aborted) {
          throw error;
        }
      }
      await sleep(backoff * (0.8 + 0.4 * Math.random()), req.signal);
      backoff = Math.min(backoff * policy.multiplier, policy.maxBackoffMs);
    }
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

export interface EventInit {
  type: string;
  subject: string;
  /** The event's data; sent as JSON bytes (the server's fast path). */
  data?: JsonObject;
  /** Default: a random UUID, fixed here so that a retried ingest is deduplicated. */
  id?: string;
  /** Default: "tally-sdk-ts". */
  source?: string;
  /** Default: none (the server uses the time it receives the event). */
  time?: Date;
}

const encoder = new TextEncoder();

/** A CloudEvent (specversion 1.0) for `events.ingestEvents({ events: [...] })`. */
export function cloudEvent(init: EventInit): CloudEvent {
  const message: MessageInitShape<typeof CloudEventSchema> = {
    id: init.id ?? crypto.randomUUID(),
    source: init.source ?? "tally-sdk-ts",
    specversion: "1.0",
    type: init.type,
    subject: init.subject,
    time: init.time === undefined ? undefined : timestampFromDate(init.time),
  };
  if (init.data !== undefined) {
    message.payload = { case: "dataJson", value: encoder.encode(JSON.stringify(init.data)) };
  }
  return create(CloudEventSchema, message);
}
