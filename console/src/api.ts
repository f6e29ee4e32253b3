/**
 * The console's one way to Tally: the SDK's client (sdk/typescript/src/client.ts) over gRPC-web to
 * the page's own origin, which is Tally's REST port (Envoy's grpc_web filter turns it into gRPC), so
 * the console can do exactly what its API key can, and no more.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import {
  bearerInterceptor,
  clientsOver,
  DEFAULT_RETRY,
  retryInterceptor,
  type TallyClient,
} from "../../sdk/typescript/src/client.ts";

import type { Caller } from "../../gen/ts/tally/v1/apikeys_pb.ts";

export type { Caller, TallyClient };

// Session storage: the key lives as long as the tab, is never put in a URL, and other sites cannot
// read it (same origin as the API).
const KEY_ITEM = "tally.console.apiKey";

export function storedApiKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function storeApiKey(apiKey: string | null): void {
  if (apiKey) {
    sessionStorage.setItem(KEY_ITEM, apiKey);
  } else {
    sessionStorage.removeItem(KEY_ITEM);
  }
}

export function tallyClient(apiKey: string | null): TallyClient {
  const interceptors: Interceptor[] = [retryInterceptor(DEFAULT_RETRY)];
  if (apiKey) {
    interceptors.push(bearerInterceptor(apiKey));
  }
  return clientsOver(
    createGrpcWebTransport({ baseUrl: window.location.origin, interceptors, defaultTimeoutMs: 30_000 }),
  );
}

/** Who this client is (namespace, scopes), or why the server would not say: the call every
 * session starts with. It needs the read scope, as every page does. */
export async function whoAmI(client: TallyClient): Promise<{ caller: Caller } | { refused: string }> {
  try {
    return { caller: await client.caller.getCaller({}) };
  } catch (error) {
    const code = ConnectError.from(error).code;
    if (code === Code.Unauthenticated || code === Code.PermissionDenied) {
      return { refused: describeError(error) };
    }
    throw error;
  }
}

/** admin implies every scope (as on the server: domain/auth/models.py). */
export function mayWrite(caller: Caller): boolean {
  return caller.scopes.includes("write") || caller.scopes.includes("admin");
}

/** Sending events takes the ingest scope, which write does not imply. */
export function mayIngest(caller: Caller): boolean {
  return caller.scopes.includes("ingest") || caller.scopes.includes("admin");
}

/** The server's own words for a failed call (its status and message), for the page to show. */
export function describeError(error: unknown): string {
  const connectError = ConnectError.from(error);
  return `${Code[connectError.code]}: ${connectError.rawMessage}`;
}
