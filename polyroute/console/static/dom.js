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

// A table; each cell also carries its column's name (data-label), which a phone shows beside the
// value when the rows become cards (console.css, table.cards).
export function table(headers, rows, attrs = {}) {
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (headers[i]) cell.dataset.label = headers[i];
    });
  }
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
  // A budget as it was set: cents when it has them, else its own digits ($0.0005 is not "$0.00").
  budget(v) {
    if (v === null || v === undefined) return "–";
    const n = Number(v);
    return n === 0 || n >= 0.01 ? `$${n.toFixed(2)}` : `$${Number(n.toPrecision(2))}`;
  },
  pct(v) {
    if (v === null || v === undefined) return "–";
    return v > 0 && v < 0.001 ? "<0.1%" : `${(v * 100).toFixed(1)}%`;
  },
  // A rate per second: two significant digits below 1, so a quiet day does not read as zero.
  rate(v) {
    if (v === null || v === undefined) return "–";
    return v === 0 ? "0" : v >= 1 ? v.toFixed(1) : String(Number(v.toPrecision(2)));
  },
  // An axis tick in USD: two significant digits, however small.
  usdTick(v) { return v === 0 ? "$0" : `$${Number(v.toPrecision(2))}`; },
  ms(v) { return v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`; },
  num(v, digits = 2) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits).replace(/\.?0+$/, ""); },
  int(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en"); },
  time(iso) { return iso ? new Date(iso).toLocaleString() : "–"; },
};
