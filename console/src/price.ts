/** Prices and rate cards in words ("$0.01 per unit, minimum $20.00"), from the catalog's messages.
 * Amounts stay decimal strings all the way to Intl (formatMoney), never floats. */
import { formatMoney, formatNumber } from "./format.ts";
import type { Discounts, Price, PriceTier } from "../../gen/ts/tally/v1/catalog_pb.ts";

const CADENCES: Record<string, string> = {
  PT1H: "hourly",
  P1D: "daily",
  P1W: "weekly",
  P2W: "every two weeks",
  P1M: "monthly",
  P3M: "quarterly",
  P6M: "every six months",
  P1Y: "yearly",
};

/** An ISO 8601 duration as a word where there is one ("P1M" → "monthly"). */
export function describeCadence(duration: string | undefined): string {
  if (!duration) return "once";
  return CADENCES[duration] ?? `every ${duration}`;
}

const UNITS: Record<string, string> = { D: "day", W: "week", M: "month", Y: "year" };

/** An ISO 8601 duration in words where it is a plain count ("P1M" → "1 month"). */
export function describeDuration(duration: string): string {
  const match = /^P(\d+)([DWMY])$/.exec(duration);
  if (!match) return duration;
  const count = Number(match[1]);
  return `${count} ${UNITS[match[2]]}${count === 1 ? "" : "s"}`;
}

function quantity(value: string): string {
  return formatNumber(Number(value));
}

function tier(step: PriceTier, currency: string): string {
  const parts = [];
  if (step.unitPrice) parts.push(`${formatMoney(step.unitPrice.amount, currency, true)} per unit`);
  if (step.flatPrice) parts.push(`${formatMoney(step.flatPrice.amount, currency)} flat`);
  return parts.join(" + ") || "free";
}

export function describePrice(price: Price | undefined, currency: string): string {
  if (!price) return "free";
  let words: string;
  switch (price.type) {
    case "flat":
      words = `${formatMoney(price.amount, currency)} flat${price.paymentTerm === "in_arrears" ? ", in arrears" : ", in advance"}`;
      break;
    case "unit":
      words = `${formatMoney(price.amount, currency, true)} per unit`;
      break;
    case "package":
      words = `${formatMoney(price.amount, currency)} per ${quantity(price.quantityPerPackage ?? "1")} units`;
      break;
    case "dynamic":
      words = `usage cost × ${price.multiplier ?? "1"}`;
      break;
    case "tiered": {
      let from = "0";
      const steps = price.tiers.map((step) => {
        const range = step.upToAmount ? `${quantity(from)} to ${quantity(step.upToAmount)}` : `above ${quantity(from)}`;
        from = step.upToAmount ?? from;
        return `${range}: ${tier(step, currency)}`;
      });
      words = `${price.mode ?? "graduated"} tiers (${steps.join("; ")})`;
      break;
    }
    default:
      words = price.type;
  }
  if (price.minimumAmount) words += `, minimum ${formatMoney(price.minimumAmount, currency)}`;
  if (price.maximumAmount) words += `, maximum ${formatMoney(price.maximumAmount, currency)}`;
  return words;
}

export function describeDiscounts(discounts: Discounts | undefined): string {
  const parts = [];
  if (discounts?.percentage) parts.push(`${formatNumber(discounts.percentage.percentage)}% off`);
  if (discounts?.usage) parts.push(`first ${quantity(discounts.usage.quantity)} units free`);
  return parts.join(", ");
}
