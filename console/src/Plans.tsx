/** Plans: every version with its phases and rate cards, prices in words (price.ts). */
import { useEffect, useState } from "react";

import { describeError, type TallyClient } from "./api.ts";
import { describeCadence, describeDiscounts, describeDuration, describePrice } from "./price.ts";
import type { Plan } from "../../gen/ts/tally/v1/catalog_pb.ts";
import { Problem } from "./Notice.tsx";

export function PlansPage({ client }: { client: TallyClient }) {
  const [plans, setPlans] = useState<Plan[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    client.plans.listPlans({ pageSize: 1000 }).then(
      (response) => setPlans([...response.items].sort((a, b) => a.key.localeCompare(b.key) || b.version - a.version)),
      (failure) => setError(describeError(failure)),
    );
  }, [client]);

  return (
    <>
      <h2>Plans</h2>
      <Problem text={error} />
      <section aria-label="Plan list" data-state={plans ? "done" : "loading"}>
        {plans?.length === 0 && <p className="muted">No plans yet.</p>}
        {plans?.map((plan) => (
          <details key={plan.id} className="panel" data-plan={`${plan.key}@${plan.version}`}>
            <summary>
              <strong>{plan.name}</strong> <span className="muted">{plan.key}</span> · version {plan.version} ·{" "}
              {plan.status} · {plan.currency}, billed {describeCadence(plan.billingCadence)}
            </summary>
            {plan.phases.map((phase) => (
              <div key={phase.key}>
                <h3>
                  Phase {phase.name}{" "}
                  <span className="muted">
                    ({phase.duration ? `for ${describeDuration(phase.duration)}` : "no end"})
                  </span>
                </h3>
                <table aria-label={`Rate cards of ${plan.key} ${phase.key}`}>
                  <thead>
                    <tr>
                      <th scope="col">Rate card</th>
                      <th scope="col">Feature</th>
                      <th scope="col">Billed</th>
                      <th scope="col">Price</th>
                      <th scope="col">Discounts</th>
                      <th scope="col">Entitlement</th>
                    </tr>
                  </thead>
                  <tbody>
                    {phase.rateCards.map((card) => (
                      <tr key={card.key} data-rate-card={card.key}>
                        <td>{card.name}</td>
                        <td>{card.featureKey ?? "—"}</td>
                        <td>{describeCadence(card.billingCadence)}</td>
                        <td data-column="price" className="reason">
                          {describePrice(card.price, plan.currency)}
                        </td>
                        <td>{describeDiscounts(card.discounts) || "—"}</td>
                        <td>{card.entitlementTemplate?.type ?? "—"}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            ))}
          </details>
        ))}
      </section>
    </>
  );
}
