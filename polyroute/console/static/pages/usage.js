// Usage: spend over time by team, key, model or route (from the ledger), the budgets, and the view as CSV.
import { api, poll } from "../api.js";
import { fmt, h, replace, section, table } from "../dom.js";
import { legend, stackedBars } from "../chart.js";

const SPANS = [["1h", "last hour"], ["1d", "last day"], ["7d", "last 7 days"], ["30d", "last 30 days"]];
const BY = ["team", "key", "model", "route"];

export async function render(main) {
  const state = { span: "1d", by: "key" };
  const body = h("div", { class: "stack" });
  const csv = h("a", { class: "button", id: "csv", download: "" }, "Export CSV");
  const pick = (name, options, labels) => h("label", {}, `${name} `,
    h("select", { id: name, onchange: (e) => { state[name] = e.target.value; refresh(); } },
      options.map((o, i) => h("option", { value: o, selected: o === state[name] }, labels ? labels[i] : o))));
  const controls = h("div", { class: "controls" },
    pick("span", SPANS.map(([k]) => k), SPANS.map(([, l]) => l)), pick("by", BY), csv);
  replace(main, h("div", { class: "title" }, h("h1", {}, "Usage")), controls, body);

  async function refresh() {
    csv.setAttribute("href", `/console/api/usage/${state.span}/${state.by}/csv`);
    const doc = await api("GET", `usage/${state.span}/${state.by}`);
    replace(body, ...view(doc));
  }
  await poll(refresh, 5);
}

function stepLabel(span) {
  return (iso) => {
    const d = new Date(iso);
    // Day steps are cut at midnight UTC (as budget periods are): labelled as UTC days, not shifted into the
    // browser's zone, where a day's spend would read as the day before west of Greenwich.
    return span === "1h" || span === "1d"
      ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : `${d.toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" })} UTC`;
  };
}

function view(doc) {
  const series = doc.series.map((g) => ({ group: g.group, values: g.cost_usd }));
  const chart = series.length
    ? [stackedBars(doc.steps, series, { label: `Spend by ${doc.by}`, format: fmt.usdTick,
        tickEvery: Math.ceil(doc.steps.length / 6), stepLabel: stepLabel(doc.span) }), legend(series.map((g) => g.group))]
    : [h("p", { class: "muted" }, "No requests in the ledger for this span yet.")];
  const totals = doc.totals.map((t) => h("tr", { "data-group": t.group },
    h("th", { scope: "row" }, t.group), h("td", { class: "num" }, fmt.int(t.requests)),
    h("td", { class: "num" }, fmt.int(t.tokens_in)), h("td", { class: "num" }, fmt.int(t.tokens_out)),
    h("td", { class: "num cost" }, fmt.usd(t.cost_usd, 6)), h("td", { class: "num failed" }, fmt.int(t.errors)),
    h("td", { class: "num refused" }, fmt.int(t.refused)),
    // A group whose every request was refused has no latency to show (the report's 0).
    h("td", { class: "num" }, t.requests > t.refused ? fmt.ms(t.p50_ms) : "–"),
    h("td", { class: "num" }, t.requests > t.refused ? fmt.ms(t.p95_ms) : "–")));
  const budgets = doc.budgets.map((b) => h("tr", { "data-budget": `${b.kind}:${b.name}` },
    h("td", {}, b.kind), h("th", { scope: "row" }, b.name),
    h("td", { class: "num" }, `${fmt.budget(b.budget_usd)} / ${b.budget_period}`),
    h("td", { class: "num" }, fmt.usd(b.spent_usd, 6)),
    h("td", {}, h("meter", { min: 0, max: 1, low: 0.7, high: 0.9, optimum: 0, value: Math.min(b.share_used || 0, 1) }),
      " ", fmt.pct(b.share_used)),
    h("td", {}, b.resets_at ? fmt.time(b.resets_at) : "never")));
  return [
    section(`Spend by ${doc.by}, since ${fmt.time(doc.since)}`, ...chart),
    section("Totals", doc.totals.length
      ? [table([doc.by, "Requests", "Tokens in", "Tokens out", "Cost", "Failed", "Refused", "p50", "p95"], totals,
          { id: "totals", class: "cards" }),
        h("p", { class: "muted" }, "Failed: the gateway or its upstreams could not answer. Refused: the client's own "
          + "doing (its key, its request, its rate limit or budget, or it left). p50 and p95 are of the requests not "
          + "refused.")]
      : h("p", { class: "muted" }, "Nothing yet.")),
    section("Budgets", budgets.length
      ? table(["Scope", "Name", "Budget", "Spent", "Used", "Resets"], budgets, { id: "budgets", class: "cards" })
      : h("p", { class: "muted" }, "No key or team has a budget.")),
  ];
}
