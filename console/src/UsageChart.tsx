/** The usage rows as bars per window, stacked by group (Chart.js on a canvas). */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { useEffect, useRef } from "react";

import { formatNumber, formatTime } from "./format.ts";
import { groupColumns, groupValue, type UsageResult } from "./Usage.tsx";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const COLORS = [
  "#2456c9",
  "#e07b00",
  "#1e7a3c",
  "#b3261e",
  "#7b3fbf",
  "#0f8a8a",
  "#8a6d0f",
  "#c2185b",
  "#546e7a",
  "#5d4037",
];

export function UsageChart({ result }: { result: UsageResult }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const { query, rows } = result;

  useEffect(() => {
    if (!canvas.current) return;
    const columns = groupColumns(query);
    const windowKey = (row: (typeof rows)[number]) => (row.windowStart ? timestampDate(row.windowStart).getTime() : 0);
    const windows = [...new Set(rows.map(windowKey))].sort((a, b) => a - b);
    const groupLabel = (row: (typeof rows)[number]) =>
      columns.length ? columns.map((column) => groupValue(row, column) || "(none)").join(" · ") : query.meter.slug;
    const groups = [...new Set(rows.map(groupLabel))].sort();
    const values = new Map<string, number[]>(groups.map((group) => [group, windows.map(() => 0)]));
    for (const row of rows) {
      values.get(groupLabel(row))![windows.indexOf(windowKey(row))] += row.value;
    }
    const chart = new Chart(canvas.current, {
      type: "bar",
      data: {
        labels: windows.map((start) =>
          query.windowSize ? formatTime(new Date(start), query.timeZone) : "whole range",
        ),
        datasets: groups.map((group, index) => ({
          label: group,
          data: values.get(group)!,
          backgroundColor: COLORS[index % COLORS.length],
        })),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
        plugins: {
          legend: { display: groups.length > 1 },
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${formatNumber(item.parsed.y ?? 0)}` } },
        },
      },
    });
    return () => chart.destroy();
  }, [query, rows]);

  return (
    <div className="chart">
      <canvas ref={canvas} role="img" aria-label={`Usage of ${query.meter.slug}, stacked by group`} />
    </div>
  );
}
