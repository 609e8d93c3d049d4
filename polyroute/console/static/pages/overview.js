// Overview: the gateway's traffic over 5 minutes, 1 hour and 1 day, every worker's (read from the usage
// ledger), refreshed every 5 s.
import { api, poll } from "../api.js";
import { fmt, h, replace, section, table } from "../dom.js";
import { legend, stackedBars } from "../chart.js";

const WINDOWS = [["5m", "last 5 min"], ["1h", "last hour"], ["1d", "last day"]];
const METRICS = [
  ["Requests / s", (w) => fmt.rate(w.requests_per_s)],
  ["Requests", (w) => fmt.int(w.requests)],
  ["Failure rate", (w) => fmt.pct(w.error_rate)],
  ["Refused", (w) => `${fmt.int(w.refused)} (${fmt.pct(w.refused_rate)})`],
  ["Latency p50", (w) => fmt.ms(w.latency_ms_p50)],
  ["Latency p95", (w) => fmt.ms(w.latency_ms_p95)],
  ["Time to first token p50", (w) => fmt.ms(w.ttft_ms_p50)],
  ["Time to first token p95", (w) => fmt.ms(w.ttft_ms_p95)],
  ["Cost", (w) => fmt.usd(w.cost_usd, 6)],
  ["Tokens in / out", (w) => `${fmt.int(w.tokens_in)} / ${fmt.int(w.tokens_out)}`],
];

export async function render(main) {
  const body = h("div", { class: "stack" });
  const stamp = h("p", { class: "muted", id: "updated" });
  replace(main, h("div", { class: "title" }, h("h1", {}, "Overview"), stamp), body);
  await poll(async () => {
    const doc = await api("GET", "overview");
    replace(body, ...view(doc));
    const source = doc.source === "ledger" ? "all workers, from the usage ledger" : "no usage ledger";
    stamp.textContent = `updated ${new Date().toLocaleTimeString()} · every 5 s · ${source}`;
  }, 5);
}

function view(doc) {
  const hour = doc.windows["1h"];
  const status = h("div", { class: "tiles" },
    tile("Fleet", doc.status, doc.status === "ok" ? "ok" : doc.status === "down" ? "bad" : "warn",
      `${doc.models_failing} of ${doc.models_total} models failing`),
    tile("Requests / s (1 h)", fmt.rate(hour.requests_per_s)),
    tile("Failure rate (1 h)", fmt.pct(hour.error_rate), hour.error_rate > 0.05 ? "bad" : "",
      "of the requests not refused"),
    tile("Refused (1 h)", fmt.int(hour.refused), "", `${fmt.pct(hour.refused_rate)} of requests: the client's own`),
    tile("p95 latency (1 h)", fmt.ms(hour.latency_ms_p95)),
    tile("TTFT p50 (1 h)", fmt.ms(hour.ttft_ms_p50)),
    tile("Cost (1 day)", fmt.usd(doc.windows["1d"].cost_usd, 4)));
  const rows = METRICS.map(([label, get]) =>
    h("tr", {}, h("th", { scope: "row" }, label), WINDOWS.map(([k]) => h("td", { class: "num" }, get(doc.windows[k])))));
  const minutes = doc.per_minute;
  const chart = stackedBars(minutes.map((m) => m.at),
    [{ group: "answered", values: minutes.map((m) => m.requests - m.errors - m.refused) },
      { group: "failed", values: minutes.map((m) => m.errors) }, { group: "refused", values: minutes.map((m) => m.refused) }],
    { label: "Requests per minute, last hour", tickEvery: 15, format: (v) => fmt.num(v, 1),
      stepLabel: (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) });
  return [
    status,
    section("Traffic", table(["", ...WINDOWS.map(([, l]) => l)], rows, { id: "windows" })),
    section("Requests per minute, last hour", chart, legend(["answered", "failed", "refused"]),
      h("p", { class: "muted", id: "fault-note" }, "Failed: the gateway or its upstreams could not answer. Refused: "
        + "the client's own doing (its key, its request, its rate limit or budget, or it left). Failure rate and "
        + "latency are of the requests not refused.")),
    section("Routes by share of traffic", h("div", { class: "columns" },
      routeShares("last hour", hour.routes), routeShares("last day", doc.windows["1d"].routes))),
  ];
}

function tile(label, value, tone = "", note = "") {
  return h("div", { class: `tile ${tone}` }, h("span", { class: "label" }, label), h("strong", {}, value),
    note ? h("span", { class: "muted" }, note) : null);
}

function routeShares(label, routes) {
  if (!routes.length) return h("div", {}, h("h3", {}, label), h("p", { class: "muted" }, "No requests yet."));
  return h("div", {}, h("h3", {}, label), table(["Route", "Requests", "Share"], routes.map((r) =>
    h("tr", {}, h("td", {}, r.route), h("td", { class: "num" }, fmt.int(r.requests)),
      h("td", {}, h("meter", { min: 0, max: 1, value: r.share }), " ", fmt.pct(r.share))))));
}
