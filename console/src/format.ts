/** Numbers and times as the console shows them: in the reader's locale, times in a chosen zone. */
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });

export function formatNumber(value: number | undefined): string {
  return value === undefined ? "—" : numberFormat.format(value);
}

export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

export function timeZones(): string[] {
  return Intl.supportedValuesOf("timeZone");
}

/** "2026-01-31 14:00" in the zone (ISO-like, sortable, unambiguous next to the zone's name). */
export function formatTime(value: Timestamp | Date | undefined, timeZone: string): string {
  if (value === undefined) {
    return "—";
  }
  const date = value instanceof Date ? value : timestampDate(value);
  const parts = zonedParts(date, timeZone);
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

/** The value of an <input type="datetime-local"> for this instant in the zone. */
export function toLocalInput(date: Date, timeZone: string): string {
  const parts = zonedParts(date, timeZone);
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

/** The instant a wall-clock time ("2026-01-31T14:00") names in the zone. */
export function fromLocalInput(local: string, timeZone: string): Date {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local);
  if (!match) {
    throw new Error(`not a date and time: ${local}`);
  }
  const [year, month, day, hour, minute] = match.slice(1).map(Number);
  const wall = Date.UTC(year, month - 1, day, hour, minute);
  // The zone's offset at the guess, applied twice so that a guess across a DST change settles.
  let instant = wall;
  for (let i = 0; i < 2; i++) {
    instant = wall - offsetMs(new Date(instant), timeZone);
  }
  return new Date(instant);
}

function offsetMs(date: Date, timeZone: string): number {
  const p = zonedParts(date, timeZone);
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return asUtc - Math.floor(date.getTime() / 1000) * 1000;
}

function zonedParts(
  date: Date,
  timeZone: string,
): Record<"year" | "month" | "day" | "hour" | "minute" | "second", string> {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(date);
  const get = (type: Intl.DateTimeFormatPartTypes) => parts.find((part) => part.type === type)?.value ?? "00";
  return {
    year: get("year"),
    month: get("month"),
    day: get("day"),
    hour: get("hour"),
    minute: get("minute"),
    second: get("second"),
  };
}

/** An amount of money (a decimal string, as the API sends it) in its currency, e.g. "$1,234.50".
 * The string goes to Intl as it is, so no digit is lost to floating point; `precise` keeps every
 * digit of a per-unit price rather than rounding to the currency's minor unit. */
export function formatMoney(amount: string | undefined, currency: string, precise = false): string {
  if (amount === undefined || amount === "") return "—";
  const format = new Intl.NumberFormat(undefined, {
    style: "currency",
    currency,
    ...(precise ? { maximumFractionDigits: 20 } : {}),
  });
  // Intl formats decimal strings exactly (ES2023); the ES2022 typings only admit numbers.
  return format.format(amount as unknown as number);
}
