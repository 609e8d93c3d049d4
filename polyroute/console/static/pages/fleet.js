// Fleet: every model with its facts, its breaker (and its backend's), and how fast it answered lately.
import { api, poll } from "../api.js";
import { fmt, h, replace, table } from "../dom.js";

export async function render(main) {
  const body = h("div", { class: "stack" });
  const stamp = h("p", { class: "muted" });
  replace(main, h("div", { class: "title" }, h("h1", {}, "Fleet"), stamp), body);
  await poll(async () => {
    const doc = await api("GET", "fleet");
    replace(body, view(doc));
    stamp.textContent = `status ${doc.status} · updated ${new Date().toLocaleTimeString()}`;
  }, 5);
}

function breakerOf(m) {
  // The model's own breaker, or its backend's when that one is out.
  return m.breaker.state !== "closed" ? m.breaker : m.backend_breaker;
}

function view(doc) {
  const healthy = doc.models.filter((m) => m.healthy).length;
  const rows = doc.models.map((m) => {
    const b = breakerOf(m);
    const price = m.price_per_mtok;
    return h("tr", { "data-model": m.name, class: m.healthy ? "healthy" : "failing" },
      h("td", {}, h("span", { class: `badge ${m.healthy ? "ok" : "bad"}` }, m.healthy ? "healthy" : "failing")),
      h("th", { scope: "row" }, m.name, h("div", { class: "muted" }, `${m.backend} · ${m.upstream}`)),
      h("td", {}, [m.origin.organisation, m.origin.country].filter(Boolean).join(", ") || "–"),
      h("td", {}, m.licence || "–"),
      h("td", {}, m.open_weights === null ? "–" : m.open_weights ? "yes" : "no"),
      h("td", {}, m.locality || "–"),
      h("td", { class: "num" }, `${fmt.num(price.input, 3)} / ${fmt.num(price.output, 3)}`),
      h("td", { class: `breaker state-${b.state}` }, b.state, b.scope ? h("div", { class: "muted" }, `scope: ${b.scope}`) : null),
      h("td", { class: "why" }, m.healthy ? "" : (m.why || "")),
      h("td", { class: "num" }, b.next_probe_in === null || b.next_probe_in === undefined ? "–" : `${fmt.num(b.next_probe_in, 1)} s`),
      h("td", { class: "num" }, fmt.ms(m.recent.ttft_ms_p50)),
      h("td", { class: "num" }, fmt.num(m.recent.tokens_per_s_p50, 1)),
      h("td", { class: "num" }, `${m.recent.failures} / ${m.recent.answers}`));
  });
  return h("section", { class: "card" },
    h("h2", {}, `${healthy} of ${doc.models.length} models healthy`),
    table(["", "Model", "Origin", "Licence", "Open weights", "Locality", "$ / Mtok in / out", "Breaker",
      "Why", "Next probe", "TTFT p50", "Tokens / s", "Failed / last"], rows, { id: "fleet", class: "cards" }),
    h("p", { class: "muted", id: "fleet-scope" }, "TTFT, tokens per second and failures are over the last 50 answers "
      + "of each model, every worker's and replica's, read from the usage ledger; breakers are this process's."));
}
