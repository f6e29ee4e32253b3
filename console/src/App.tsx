/**
 * The shell: sign-in, navigation and the page for the location's hash (#/usage, #/customers,
 * #/customers/<id or key>, #/events, #/meters, #/features, #/notifications, #/plans, #/invoices,
 * #/invoices/<id>). Hash routes keep every page at /console, the one HTML file Envoy serves.
 * New pages (add-ons, apps, billing profiles) add an entry to PAGES and a case to `route`.
 */
import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";

import {
  type Caller,
  describeError,
  mayIngest,
  mayWrite,
  storeApiKey,
  storedApiKey,
  type TallyClient,
  tallyClient,
  whoAmI,
} from "./api.ts";
import { CustomerPage, CustomersPage } from "./Customers.tsx";
import { EventsPage } from "./Events.tsx";
import { FeaturesPage } from "./Features.tsx";
import { Field } from "./Field.tsx";
import { InvoicePage, InvoicesPage } from "./Invoices.tsx";
import { MetersPage } from "./Meters.tsx";
import { NotificationsPage } from "./Notifications.tsx";
import { PlansPage } from "./Plans.tsx";
import { UsagePage } from "./Usage.tsx";
import { Problem } from "./Notice.tsx";

const PAGES = [
  { hash: "#/usage", title: "Usage" },
  { hash: "#/customers", title: "Customers" },
  { hash: "#/events", title: "Events" },
  { hash: "#/meters", title: "Meters" },
  { hash: "#/features", title: "Features" },
  { hash: "#/notifications", title: "Notifications" },
  { hash: "#/plans", title: "Plans" },
  { hash: "#/invoices", title: "Invoices" },
] as const;

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash || PAGES[0].hash);
  useEffect(() => {
    const onChange = () => setHash(window.location.hash || PAGES[0].hash);
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return hash;
}

type Session =
  | { state: "checking" }
  | { state: "signed-out"; error?: string }
  | { state: "signed-in"; client: TallyClient; apiKey: string | null; caller: Caller };

export function App() {
  const [session, setSession] = useState<Session>({ state: "checking" });

  // Tries a key, or none: a loopback `make run` needs none, as its API needs none.
  const signIn = useCallback(async (apiKey: string | null) => {
    const client = tallyClient(apiKey);
    try {
      const answer = await whoAmI(client);
      if ("caller" in answer) {
        storeApiKey(apiKey);
        setSession({ state: "signed-in", client, apiKey, caller: answer.caller });
      } else {
        storeApiKey(null);
        // Without a key, the server asking for one is the normal start, not an error.
        setSession({ state: "signed-out", error: apiKey ? answer.refused : undefined });
      }
    } catch (error) {
      setSession({ state: "signed-out", error: describeError(error) });
    }
  }, []);

  useEffect(() => {
    void signIn(storedApiKey());
  }, [signIn]);

  if (session.state === "checking") {
    return (
      <p className="muted" role="status">
        Connecting to Tally…
      </p>
    );
  }
  if (session.state === "signed-out") {
    return <SignIn error={session.error} onSubmit={(key) => void signIn(key)} />;
  }
  const signOut = () => {
    storeApiKey(null);
    setSession({ state: "signed-out" });
  };
  return <Shell client={session.client} apiKey={session.apiKey} caller={session.caller} onSignOut={signOut} />;
}

function SignIn({ error, onSubmit }: { error?: string; onSubmit: (apiKey: string) => void }) {
  const [apiKey, setApiKey] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSubmit(apiKey.trim());
  };
  return (
    <main className="signin">
      <div className="panel">
        <h2>Sign in to Tally</h2>
        <Problem text={error} />
        <form onSubmit={submit}>
          <Field label="API key">
            {(id) => (
              <input
                id={id}
                type="password"
                autoComplete="off"
                required
                value={apiKey}
                onChange={(event) => setApiKey(event.target.value)}
              />
            )}
          </Field>
          <button type="submit">Sign in</button>
          <p className="muted">
            The key is kept in this tab's session storage only. Create one with <code>tally apikeys create</code>.
          </p>
        </form>
      </div>
    </main>
  );
}

function Shell({
  client,
  apiKey,
  caller,
  onSignOut,
}: {
  client: TallyClient;
  apiKey: string | null;
  caller: Caller;
  onSignOut: () => void;
}) {
  const hash = useHash();
  const canWrite = mayWrite(caller);
  const canIngest = mayIngest(caller);
  const page = useMemo(() => route(hash, client, canWrite, canIngest), [hash, client, canWrite, canIngest]);
  const active = PAGES.find((candidate) => hash.startsWith(candidate.hash));
  return (
    <div className="shell">
      <nav aria-label="Console">
        <h1>Tally</h1>
        <ul>
          {PAGES.map((candidate) => (
            <li key={candidate.hash}>
              <a href={candidate.hash} aria-current={candidate === active ? "page" : undefined}>
                {candidate.title}
              </a>
            </li>
          ))}
        </ul>
        <dl className="who" aria-label="Signed in as">
          <dt>Namespace</dt>
          <dd data-testid="namespace">{caller.namespace}</dd>
          <dt>Scopes</dt>
          <dd data-testid="scopes">{caller.scopes.join(", ")}</dd>
          <dt>API key</dt>
          <dd>{apiKey ? caller.apiKeyId : "none (keyless on loopback)"}</dd>
        </dl>
        {apiKey && (
          <button type="button" className="secondary" onClick={onSignOut}>
            Sign out
          </button>
        )}
      </nav>
      <main>{page}</main>
    </div>
  );
}

// canWrite hides what the key may not do; the server still decides, and says why when it refuses.
function route(hash: string, client: TallyClient, canWrite: boolean, canIngest: boolean) {
  const customer = /^#\/customers\/(.+)$/.exec(hash);
  if (customer) {
    return <CustomerPage client={client} canWrite={canWrite} idOrKey={decodeURIComponent(customer[1])} />;
  }
  if (hash.startsWith("#/customers")) {
    return <CustomersPage client={client} canWrite={canWrite} />;
  }
  if (hash.startsWith("#/events")) {
    return <EventsPage client={client} canIngest={canIngest} />;
  }
  if (hash.startsWith("#/meters")) {
    return <MetersPage client={client} canWrite={canWrite} />;
  }
  const invoice = /^#\/invoices\/(.+)$/.exec(hash);
  if (invoice) {
    return <InvoicePage client={client} canWrite={canWrite} id={decodeURIComponent(invoice[1])} />;
  }
  if (hash.startsWith("#/plans")) {
    return <PlansPage client={client} />;
  }
  if (hash.startsWith("#/invoices")) {
    return <InvoicesPage client={client} />;
  }
  if (hash.startsWith("#/features")) {
    return <FeaturesPage client={client} canWrite={canWrite} />;
  }
  if (hash.startsWith("#/notifications")) {
    return <NotificationsPage client={client} canWrite={canWrite} />;
  }
  return <UsagePage client={client} />;
}
