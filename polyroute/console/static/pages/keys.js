// Keys: make one (its secret shown once, with a copy button), revoke, rotate; teams: make one, delete one.
import { api } from "../api.js";
import { fmt, h, replace, section, table } from "../dom.js";

export async function render(main) {
  const list = h("div", {});
  const reveal = h("div", { id: "reveal" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const meta = await api("GET", "keys");
  const form = createForm(meta, async (fields) => {
    error.hidden = true;
    try {
      const made = await api("POST", "keys", fields);
      showSecret(reveal, made.name, made.secret, "made");
      form.reset();
      await refresh();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  });
  const teams = h("div", {});
  const teamError = h("p", { class: "error", role: "alert", hidden: true });
  const teamForm = createTeamForm(async (fields) => {
    teamError.hidden = true;
    try {
      await api("POST", "teams", fields);
      teamForm.reset();
      await refreshTeams();
    } catch (err) {
      teamError.textContent = err.message;
      teamError.hidden = false;
    }
  });
  replace(main, h("div", { class: "title" }, h("h1", {}, "Keys")), reveal,
    section("New key", form, error), section("Keys in the store", list),
    section("Teams", h("p", { class: "muted" }, "A team's budget and limits are shared by every key that names it."),
      teamForm, teamError, teams));

  async function refreshTeams() {
    const doc = await api("GET", "teams");
    const names = document.getElementById("team-names");  // what the key form offers
    if (names) replace(names, doc.data.map((t) => h("option", { value: t.name })));
    replace(teams, teamTable(doc.data, async (name) => {
      teamError.hidden = true;
      try {
        await api("DELETE", `teams/${encodeURIComponent(name)}`);
      } catch (err) {
        // Keys still name it: deleting it lifts its limits from them, so only when asked again in so many words.
        if (err.status !== 409 || !confirm(`${err.message}.\n\nDelete team ${name} anyway?`)) {
          teamError.textContent = err.status === 409 ? "" : err.message;
          teamError.hidden = err.status === 409;
          return;
        }
        await api("DELETE", `teams/${encodeURIComponent(name)}`, { force: true });
      }
      await refreshTeams();
    }));
  }
  await refreshTeams();

  async function refresh() {
    const doc = await api("GET", "keys");
    replace(list, keyTable(doc, {
      revoke: async (name) => {
        if (!confirm(`Revoke ${name}? Requests with it are refused from now on.`)) return;
        await api("DELETE", `keys/${encodeURIComponent(name)}`);
        await refresh();
      },
      rotate: async (name, revoked) => {
        const ask = revoked
          ? `Reissue ${name}? It was revoked: it works again from now on, with a new secret.`
          : `Rotate ${name}? Its current secret stops working at once.`;
        if (!confirm(ask)) return;
        // A rotation asks only for a new secret: a key revoked meanwhile (in another tab) is refused, not revived.
        const rotated = await api("POST", `keys/${encodeURIComponent(name)}/rotate`, revoked ? { reactivate: true } : undefined);
        showSecret(reveal, rotated.name, rotated.secret, revoked ? "reissued" : "rotated");
        await refresh();
      },
    }), doc.config_keys.length
      ? h("p", { class: "muted" }, `Also from the config file (edit it to change them): ${doc.config_keys.join(", ")}`)
      : null);
  }
  await refresh();
}

function field(label, input, note) {
  return h("label", { class: "field" }, h("span", {}, label), input, note ? h("small", { class: "muted" }, note) : null);
}

function createForm(meta, submit) {
  const teams = h("datalist", { id: "team-names" }, meta.teams.map((t) => h("option", { value: t })));
  const routes = h("fieldset", { class: "routes" }, h("legend", {}, "Routes (none ticked: every route)"),
    meta.routes.map((r) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "routes", value: r }), r)));
  const form = h("form", { id: "new-key", class: "grid-form" },
    field("Name", h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_.\\-]{1,64}", autocomplete: "off" })),
    field("Team", h("input", { name: "team", list: "team-names", autocomplete: "off" })), teams,
    field("Policy", h("select", { name: "policy" }, h("option", { value: "" }, "(none)"),
      meta.policies.map((p) => h("option", { value: p }, p)))),
    field("Budget USD", h("input", { name: "budget_usd", type: "number", min: "0", step: "any" })),
    field("Budget period", h("select", { name: "budget_period" },
      ["month", "week", "day", "total"].map((p) => h("option", { value: p }, p)))),
    field("Requests / min", h("input", { name: "rpm", type: "number", min: "1", step: "1" })),
    field("Tokens / min", h("input", { name: "tpm", type: "number", min: "1", step: "1" })),
    field("Expires", h("input", { name: "expires_at", type: "datetime-local" }), "local time; empty: never"),
    routes,
    h("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const f = form.elements;
    const fields = { name: f.name.value.trim(), budget_period: f.budget_period.value };
    if (f.team.value.trim()) fields.team = f.team.value.trim();
    if (f.policy.value) fields.policy = f.policy.value;
    if (f.budget_usd.value) fields.budget_usd = Number(f.budget_usd.value);
    if (f.rpm.value) fields.rpm = Number(f.rpm.value);
    if (f.tpm.value) fields.tpm = Number(f.tpm.value);
    if (f.expires_at.value) {
      // A date the browser cannot read (a five-digit year) goes as typed, for the gateway to say what is wrong.
      const when = new Date(f.expires_at.value);
      fields.expires_at = Number.isNaN(when.getTime()) ? f.expires_at.value : when.toISOString();
    }
    const ticked = [...form.querySelectorAll("input[name=routes]:checked")].map((i) => i.value);
    if (ticked.length) fields.routes = ticked;
    submit(fields);
  });
  return form;
}

function showSecret(box, name, secret, verb) {
  const input = h("input", { id: "secret", readonly: true, value: secret, spellcheck: "false", "aria-label": "secret" });
  const status = h("span", { class: "muted", role: "status" });
  const copy = h("button", { type: "button", id: "copy", onclick: async () => {
    try {
      await navigator.clipboard.writeText(secret);
    } catch {
      input.select();
      document.execCommand("copy");
    }
    status.textContent = "copied";
  } }, "Copy");
  const done = h("button", { type: "button", class: "quiet", onclick: () => box.replaceChildren() }, "I have stored it");
  replace(box, h("section", { class: "card secret" },
    h("h2", {}, `Key ${name} ${verb}: its secret`),
    h("p", {}, "Shown this once: the gateway keeps only its hash. Copy it now."),
    h("div", { class: "copy-row" }, input, copy, status), done));
}

function keyTable(doc, actions) {
  if (!doc.keys.length) return h("p", { class: "muted" }, "No key in the store yet.");
  const rows = doc.keys.map((k) => h("tr", { "data-key": k.name, class: k.revoked ? "revoked" : "" },
    h("th", { scope: "row" }, k.name), h("td", {}, k.team || "–"), h("td", {}, k.policy || "–"),
    h("td", {}, k.routes ? k.routes.join(", ") : "all"),
    h("td", { class: "num" }, k.budget_usd === null ? "–" : `${fmt.budget(k.budget_usd)} / ${k.budget_period}`),
    h("td", { class: "num" }, k.rpm ?? "–"), h("td", { class: "num" }, k.tpm ?? "–"),
    h("td", {}, k.expires_at ? fmt.time(k.expires_at) : "never"),
    h("td", { class: "status" }, h("span", { class: `badge ${k.revoked ? "bad" : "ok"}` }, k.revoked ? "revoked" : "active")),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "quiet", onclick: () => actions.rotate(k.name, k.revoked) }, k.revoked ? "Reissue" : "Rotate"),
      k.revoked ? null : h("button", { type: "button", class: "danger", onclick: () => actions.revoke(k.name) }, "Revoke"))));
  return table(["Name", "Team", "Policy", "Routes", "Budget", "RPM", "TPM", "Expires", "Status", ""], rows, { id: "keys", class: "cards" });
}

function createTeamForm(submit) {
  const form = h("form", { id: "new-team", class: "grid-form" },
    field("Name", h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_.\\-]{1,64}", autocomplete: "off" })),
    field("Budget USD", h("input", { name: "budget_usd", type: "number", min: "0", step: "any" })),
    field("Budget period", h("select", { name: "budget_period" },
      ["month", "week", "day", "total"].map((p) => h("option", { value: p }, p)))),
    field("Requests / min", h("input", { name: "rpm", type: "number", min: "1", step: "1" })),
    field("Tokens / min", h("input", { name: "tpm", type: "number", min: "1", step: "1" })),
    h("button", { type: "submit" }, "Create team"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const f = form.elements;
    const fields = { name: f.name.value.trim(), budget_period: f.budget_period.value };
    if (f.budget_usd.value) fields.budget_usd = Number(f.budget_usd.value);
    if (f.rpm.value) fields.rpm = Number(f.rpm.value);
    if (f.tpm.value) fields.tpm = Number(f.tpm.value);
    submit(fields);
  });
  return form;
}

function teamTable(teams, remove) {
  if (!teams.length) return h("p", { class: "muted" }, "No team yet.");
  const rows = teams.map((t) => h("tr", { "data-team": t.name },
    h("th", { scope: "row" }, t.name), h("td", {}, t.source),
    h("td", { class: "num" }, t.budget_usd === null ? "–" : `${fmt.budget(t.budget_usd)} / ${t.budget_period}`),
    h("td", { class: "num" }, t.rpm ?? "–"), h("td", { class: "num" }, t.tpm ?? "–"),
    h("td", { class: "actions" }, t.source === "store"
      ? h("button", { type: "button", class: "danger", onclick: () => remove(t.name) }, "Delete")
      : h("span", { class: "muted" }, "edit the config file"))));
  return table(["Name", "Source", "Budget", "RPM", "TPM", ""], rows, { id: "teams", class: "cards" });
}
