/**
 * Tally's TypeScript client for Node: typed clients for every Tally service over the buf-generated
 * descriptors in gen/ts (protoc-gen-es), on Connect-ES transports. It adds what the generated code
 * lacks: one call to connect, `Authorization: Bearer <key>`, a default deadline, retries of calls
 * that are safe to repeat, and a CloudEvent builder that fixes ids before the first attempt.
 * Everything but Node's transports lives in client.ts, which browsers use too.
 */

import type { Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

import { bearerInterceptor, type ClientOptions, clientsOver, DEFAULT_RETRY, retryInterceptor, type TallyClient } from "./client.js";

export * from "./client.js";

/**
 * Clients for every Tally service.
 *
 *   const tally = createClient("http://127.0.0.1:8888", { apiKey: process.env.TALLY_API_KEY });
 *   await tally.meters.queryMeter({ meterIdOrSlug: "tokens_total", groupBy: ["model"] });
 */
export function createClient(baseUrl: string, options: ClientOptions = {}): TallyClient {
  const interceptors: Interceptor[] = [retryInterceptor(options.retry ?? DEFAULT_RETRY)];
  if (options.apiKey) {
    interceptors.push(bearerInterceptor(options.apiKey));
  }
  interceptors.push(...(options.interceptors ?? []));
  let transport = options.transport;
  if (transport === undefined) {
    const common = { baseUrl, interceptors, defaultTimeoutMs: options.timeoutMs ?? 10_000 };
    transport =
      (options.protocol ?? "grpc-web") === "grpc"
        ? createGrpcTransport(common)
        : createGrpcWebTransport({ ...common, httpVersion: "1.1" });
  } else if (options.apiKey || options.retry || options.interceptors) {
    throw new TypeError("with `transport`, configure interceptors on that transport");
  }
  return clientsOver(transport);
}

