// Evaluations: cost against quality per model, and refusal rates per language side by side (with the share of
// specialised-advice items answered with care, where a suite has them).
import { api } from "../api.js";
import { fmt, h, replace, section, table } from "../dom.js";
import { scatter } from "../chart.js";

export async function render(main) {
  const doc = await api("GET", "evals");
  const title = h("div", { class: "title" }, h("h1", {}, "Evaluations"), h("p", { class: "muted" }, `store: ${doc.db}`));
  if (!doc.rows.length) {
    replace(main, title, section("No results yet", h("p", {},
      "Run an evaluation, e.g. ", h("code", {}, "polyroute eval run xstest mmlu --models MODEL1,MODEL2 --limit 100"),
      ", then come back.")));
    return;
  }
  const suites = [...new Set(doc.scatter.map((p) => p.suite))];
  const plot = h("div", {});
  const pick = h("select", { id: "suite", onchange: () => draw(pick.value) }, suites.map((s) => h("option", { value: s }, s)));
  function draw(suite) {
    const points = doc.scatter.filter((p) => p.suite === suite);
    const measure = points[0]?.measure === "accuracy" ? "accuracy" : "unsafe prompts refused";
    replace(plot, scatter(points.map((p) => ({ x: p.cost_per_1k_items, y: p.quality, label: p.model })),
      { xLabel: "cost per 1,000 items (USD)", yLabel: measure, formatX: fmt.usdTick, label: `${suite}: cost against ${measure}` }));
  }
  if (suites.length) draw(suites[0]);
  replace(main, title,
    section("Cost against quality", h("label", {}, "Suite ", pick), plot),
    section("Refusals by language", languageTable(doc.refusals, doc.languages, false)),
    section("Refusals by language and hazard", languageTable(doc.hazards, doc.languages, true)),
    section("Every result", resultTable(doc.rows)));
}

function languageTable(lines, langs, withCategory) {
  if (!lines.length) return h("p", { class: "muted" }, "No safety suite has results.");
  const gap = langs.includes("en") && langs.includes("zh");
  // Specialised advice (AILuminate's spc_*) is not must-refuse: its own column, the share answered with care.
  const advised = lines.some((line) => Object.values(line.by_lang).some((r) => r.advice_pass_rate != null));
  const heads = ["Model", "Suite", ...(withCategory ? ["Hazard"] : []),
    ...langs.flatMap((l) => [`${l.toUpperCase()} unsafe refused`, `${l.toUpperCase()} safe refused`,
      ...(advised ? [`${l.toUpperCase()} advice ok`] : [])]),
    ...(gap ? ["Gap EN−ZH (unsafe)", "Gap EN−ZH (safe)"] : [])];
  const rows = lines.map((line) => {
    const cells = langs.flatMap((l) => {
      const r = line.by_lang[l];
      return [h("td", { class: "num" }, r ? fmt.pct(r.unsafe_refusal_rate) : "–"), h("td", { class: "num" }, r ? fmt.pct(r.safe_refusal_rate) : "–"),
        advised ? h("td", { class: "num" }, r ? fmt.pct(r.advice_pass_rate) : "–") : null];
    });
    const diff = (field) => {
      const en = line.by_lang.en?.[field], zh = line.by_lang.zh?.[field];
      if (en === null || en === undefined || zh === null || zh === undefined) return "–";
      const d = (en - zh) * 100;
      return `${d > 0 ? "+" : ""}${d.toFixed(1)} pt`;
    };
    return h("tr", {}, h("th", { scope: "row" }, line.model), h("td", {}, line.suite),
      withCategory ? h("td", {}, line.category || "–") : null, cells,
      gap ? [h("td", { class: "num" }, diff("unsafe_refusal_rate")), h("td", { class: "num" }, diff("safe_refusal_rate"))] : null);
  });
  return table(heads, rows);
}

function resultTable(rows) {
  // Failed items (the model errored) are counted apart: the rates are of the items answered.
  const advised = rows.some((r) => r.advice_pass_rate != null);
  return table(["Model", "Suite", "Lang", "n", "Failed", "Accuracy", "Unsafe refused", "Safe refused",
    ...(advised ? ["Advice ok"] : []), "$ / 1k items", "p50 latency"],
    rows.map((r) => h("tr", {}, h("th", { scope: "row" }, r.model), h("td", {}, r.suite), h("td", {}, r.lang),
      h("td", { class: "num" }, fmt.int(r.n)),
      h("td", { class: `num${r.errors ? " error" : ""}` }, fmt.int(r.errors ?? 0)),
      h("td", { class: "num" }, r.errors === r.n ? "–" : fmt.pct(r.accuracy)),
      h("td", { class: "num" }, fmt.pct(r.unsafe_refusal_rate)), h("td", { class: "num" }, fmt.pct(r.safe_refusal_rate)),
      advised ? h("td", { class: "num" }, fmt.pct(r.advice_pass_rate)) : null,
      h("td", { class: "num" }, fmt.usd(r.cost_per_1k_items, 4)),
      h("td", { class: "num" }, r.p50_latency_s === null ? "–" : `${fmt.num(r.p50_latency_s, 3)} s`))));
}
