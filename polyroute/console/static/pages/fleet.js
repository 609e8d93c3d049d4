// Fleet: every model with its facts, its breaker (and its backend's), and how fast it answered lately.
// "Probe" asks a model one tiny real request now (POST probe): its breaker is told the outcome, so a model
// whose cause was fixed comes back at once. A probe costs a request on a paid provider: a model is probed at
// most once every few seconds (the answer's spacing_s), and its button waits that long.
import { api, poll } from "../api.js";
import { fmt, h, replace, table } from "../dom.js";

export async function render(main) {
  const body = h("div", { class: "stack" });
  const stamp = h("p", { class: "muted" });
  // model -> { busy } | { result, until } | { error, until }: kept across the page's refreshes.
  const probes = new Map();
  let all = false;  // "Probe all" is asking
  let last = null;
  const allButton = h("button", { type: "button", id: "probe-all", onclick: () => probe(null) }, "Probe all");

  function draw() {
    if (last === null) return;
    const now = Date.now();
    const waiting = last.models.some((m) => (probes.get(m.name)?.until || 0) > now || probes.get(m.name)?.busy);
    allButton.disabled = all || waiting;
    allButton.textContent = all ? "Probing all…" : "Probe all";
    allButton.setAttribute("aria-busy", all ? "true" : "false");
    replace(body, view(last, probes, probe));
  }

  async function refresh() {
    last = await api("GET", "fleet");
    draw();
    stamp.textContent = `status ${last.status} · updated ${new Date().toLocaleTimeString()}`;
  }

  async function probe(name) {
    const names = name === null ? last.models.map((m) => m.name) : [name];
    for (const n of names) probes.set(n, { busy: true });
    all = name === null;
    draw();
    let spacing = 5;
    try {
      const doc = await api("POST", "probe", name === null ? {} : { models: [name] });
      spacing = doc.spacing_s;
      const until = Date.now() + spacing * 1000;
      for (const r of doc.data) probes.set(r.model, { result: r, until });
    } catch (err) {
      const until = Date.now() + spacing * 1000;
      for (const n of names) probes.set(n, { error: err.message, until });
    } finally {
      all = false;
    }
    setTimeout(draw, spacing * 1000 + 50);  // the buttons may ask again then
    try {
      await refresh();  // the breakers as the probe left them
    } catch {
      draw();
    }
  }

  replace(main, h("div", { class: "title" }, h("h1", {}, "Fleet"), stamp, allButton), body);
  await poll(refresh, 5);
}

function breakerOf(m) {
  // The model's own breaker, or its backend's when that one is out.
  return m.breaker.state !== "closed" ? m.breaker : m.backend_breaker;
}

function probeCell(m, state, probe) {
  const busy = Boolean(state?.busy);
  const waiting = (state?.until || 0) > Date.now();
  const button = h("button", { type: "button", class: "quiet", disabled: busy || waiting, "aria-busy": busy ? "true" : "false",
    title: waiting ? "a model is probed at most once every few seconds" : "ask this model one tiny real request now",
    onclick: () => probe(m.name) }, busy ? "Probing…" : "Probe");
  return h("td", { class: "probe" }, h("div", {}, button, probeResult(state)));
}

function probeResult(state) {
  if (!state || state.busy) return null;
  if (state.error) return h("div", { class: "result error", role: "status" }, state.error);
  const r = state.result;
  if (r.result === "ok") {
    const tokens = r.prompt_tokens === null ? "" : ` · ${r.prompt_tokens}+${r.completion_tokens} tokens`;
    const cost = r.cost_usd === null ? "" : r.cost_usd === 0 ? " · $0" : ` · ${fmt.usd(r.cost_usd, 6)}`;
    return h("div", { class: "result", role: "status" }, h("span", { class: "badge ok" }, "ok"),
      ` ${fmt.ms(r.latency_ms)}${tokens}${cost}`);
  }
  return h("div", { class: "result", role: "status" },
    h("span", { class: `badge ${r.result === "skipped" ? "warn" : "bad"}` }, r.words),
    r.upstream_status ? ` ${r.upstream_status}` : "",
    r.message ? h("div", { class: "said" }, r.message) : null,
    r.hint ? h("div", { class: "hint muted" }, r.hint) : null);
}

function view(doc, probes, probe) {
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
      probeCell(m, probes.get(m.name), probe),
      h("td", { class: "num" }, fmt.ms(m.recent.ttft_ms_p50)),
      h("td", { class: "num" }, fmt.num(m.recent.tokens_per_s_p50, 1)),
      h("td", { class: "num" }, `${m.recent.failures} / ${m.recent.answers}`));
  });
  return h("section", { class: "card" },
    h("h2", {}, `${healthy} of ${doc.models.length} models healthy`),
    table(["", "Model", "Origin", "Licence", "Open weights", "Locality", "$ / Mtok in / out", "Breaker",
      "Why", "Next probe", "Probe now", "TTFT p50", "Tokens / s", "Failed / last"], rows, { id: "fleet", class: "cards" }),
    h("p", { class: "muted", id: "fleet-scope" }, "TTFT, tokens per second and failures are over the last 50 answers "
      + "of each model, every worker's and replica's, read from the usage ledger; breakers are this process's. "
      + "Probe asks a model one tiny real request now (billed, in the ledger as route (probe)); an answer closes "
      + "its breakers at once, a failure keeps them open with the reason."));
}
