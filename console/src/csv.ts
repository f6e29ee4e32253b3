/** The usage table as CSV: the same rows, times in RFC 3339 UTC, values unformatted. */
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { groupColumns, groupValue, type UsageResult } from "./Usage.tsx";

function cell(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function usageCsv({ query, rows }: UsageResult): string {
  const columns = groupColumns(query);
  const header = ["window_start", "window_end", ...columns, "value"];
  const lines = [header.map(cell).join(",")];
  for (const row of rows) {
    lines.push(
      [
        row.windowStart ? timestampDate(row.windowStart).toISOString() : "",
        row.windowEnd ? timestampDate(row.windowEnd).toISOString() : "",
        ...columns.map((column) => groupValue(row, column)),
        String(row.value),
      ]
        .map(cell)
        .join(","),
    );
  }
  return lines.join("\n") + "\n";
}
