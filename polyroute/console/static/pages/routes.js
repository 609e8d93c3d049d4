// Routes: each route's candidates and strategy, and the routing decision for a typed prompt.
import { api } from "../api.js";
import { fmt, h, replace, section, table } from "../dom.js";

export async function render(main) {
  const doc = await api("GET", "routes");
  const result = h("div", { id: "decision" });
  const rows = doc.routes.map((r) => h("tr", { "data-route": r.name },
    h("th", { scope: "row" }, r.name), h("td", {}, r.strategy), h("td", {}, r.policy || "–"),
    h("td", {}, h("ol", { class: "candidates" }, r.candidates.map((c) =>
      h("li", {}, `${c.model} `, h("span", { class: "muted" },
        `${c.backend} · ${c.locality || "?"} · $${fmt.num(c.price_per_mtok.input, 3)}/${fmt.num(c.price_per_mtok.output, 3)} per Mtok`)))))));
  const form = h("form", { id: "explain", class: "grid-form" },
    h("label", { class: "field" }, h("span", {}, "Route"),
      h("select", { name: "route" }, doc.routes.map((r) => h("option", { value: r.name }, r.name)))),
    h("label", { class: "field" }, h("span", {}, "As key"),
      h("select", { name: "key" }, h("option", { value: "" }, "(no key)"), doc.keys.map((k) => h("option", { value: k }, k)))),
    h("label", { class: "field" }, h("span", {}, "Narrow with policy"),
      h("select", { name: "policy" }, h("option", { value: "" }, "(none)"), doc.policies.map((p) => h("option", { value: p }, p)))),
    h("label", { class: "field" }, h("span", {}, "max_tokens"), h("input", { name: "max_tokens", type: "number", min: "1" })),
    h("label", { class: "field wide" }, h("span", {}, "Prompt"), h("textarea", { name: "prompt", rows: 4, required: true })),
    h("button", { type: "submit" }, "Explain"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const ask = { route: f.route.value, prompt: f.prompt.value };
    if (f.key.value) ask.key = f.key.value;
    if (f.policy.value) ask.policy = f.policy.value;
    if (f.max_tokens.value) ask.max_tokens = Number(f.max_tokens.value);
    try {
      replace(result, decision(await api("POST", "explain", ask)));
    } catch (err) {
      replace(result, h("p", { class: "error", role: "alert" }, err.message));
    }
  });
  replace(main, h("div", { class: "title" }, h("h1", {}, "Routes")),
    section("Routes", table(["Route", "Strategy", "Policy", "Candidates, in order"], rows, { id: "routes", class: "cards" })),
    section("Explain a routing decision", h("p", { class: "muted" }, "As `polyroute route explain` does: nothing is sent."),
      form, result));
}

function decision(d) {
  const req = d.request;
  const order = d.order.map((o, i) => h("tr", {},
    h("td", { class: "num" }, i + 1), h("th", { scope: "row" }, o.model), h("td", {}, o.backend),
    h("td", { class: "num" }, o.score === null ? "unknown" : fmt.num(o.score, 6)),
    h("td", { class: "num" }, o.cost_usd_est === null ? "unknown" : fmt.usd(o.cost_usd_est, 6)),
    h("td", { class: "num" }, o.context_window ?? "–"), h("td", {}, o.fallback_only ? `fallback only: ${o.fallback_only}` : "")));
  const excluded = d.excluded.map((e) => h("tr", {}, h("th", { scope: "row" }, e.model), h("td", {}, e.backend),
    h("td", { class: "num" }, e.cost_usd_est === null ? "unknown" : fmt.usd(e.cost_usd_est, 6)), h("td", {}, e.reason)));
  return h("div", { class: "stack" },
    h("p", {}, h("strong", {}, `route ${d.route}`), `: strategy ${d.strategy}, policy ${d.policy || "(none)"}`,
      req ? ` · ~${req.prompt_tokens_est} prompt tokens, ${req.output_tokens_est} output tokens expected; needs ${req.needs.join(", ") || "nothing special"}` : ""),
    d.order.length
      ? table(["#", "Model", "Backend", `Score (${d.score})`, "Est. cost", "Context", ""], order, { id: "order", class: "cards" })
      : h("p", { class: "error" }, `No candidate qualifies: ${d.refusal}`),
    d.excluded.length ? h("div", {}, h("h3", {}, "Excluded"), table(["Model", "Backend", "Est. cost", "Reason"], excluded)) : null);
}
