// Building the page from data: elements and text only (never HTML from strings), so a name or an
// upstream's error message is shown as text, whatever it holds.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function table(headers, rows, attrs = {}) {
  return h("div", { class: "scroll" },
    h("table", attrs,
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export const fmt = {
  usd(v, digits = 4) { return v === null || v === undefined ? "–" : `$${Number(v).toFixed(digits)}`; },
  pct(v) { return v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`; },
  ms(v) { return v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`; },
  num(v, digits = 2) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits).replace(/\.?0+$/, ""); },
  int(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en"); },
  time(iso) { return iso ? new Date(iso).toLocaleString() : "–"; },
};
