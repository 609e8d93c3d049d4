// Small SVG charts drawn by hand: bars over time, stacked bars, a scatter. Colours come from classes
// in console.css (c0..c8), so the page needs no inline style.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// Drawn at the width it will be shown at, so its text keeps its size on a phone and on a laptop.
function pageWidth() {
  const page = document.getElementById("page");
  return Math.max(300, Math.min(1240, (page ? page.clientWidth : 700) - 40));
}

function frame(width, height, label) {
  return s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label });
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axisY(svg, max, x0, y0, y1, width, format) {
  for (const f of [0, 0.5, 1]) {
    const y = y0 - (y0 - y1) * f;
    svg.append(s("line", { x1: x0, x2: width, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: x0 - 4, y: y + 4, class: "tick", "text-anchor": "end" }, format(max * f)));
  }
}

// stacked: steps (labels), series [{group, values}]; one column per step, groups stacked.
export function stackedBars(steps, series, { format = (v) => v, label = "chart", tickEvery = 1, stepLabel = (t) => t } = {}) {
  const width = pageWidth(), height = 220, x0 = 64, y0 = 190, y1 = 10;
  const svg = frame(width, height, label);
  const totals = steps.map((_, i) => series.reduce((sum, g) => sum + g.values[i], 0));
  const max = niceMax(Math.max(...totals, 0));
  axisY(svg, max, x0, y0, y1, width, format);
  const slot = (width - x0) / Math.max(steps.length, 1);
  // Never more labels than fit: about one per 90 px.
  tickEvery = Math.max(tickEvery, Math.ceil(steps.length / Math.max(Math.floor((width - x0) / 90), 1)));
  steps.forEach((step, i) => {
    let top = y0;
    series.forEach((g, k) => {
      const v = g.values[i];
      if (!(v > 0)) return;
      const hgt = ((y0 - y1) * v) / max;
      top -= hgt;
      const rect = s("rect", { x: x0 + i * slot + 1, y: top, width: Math.max(slot - 2, 1), height: hgt, class: `c${k % 9}` });
      rect.append(s("title", {}, `${g.group}: ${format(v)} (${stepLabel(step)})`));
      svg.append(rect);
    });
    if (i % tickEvery === 0) {
      svg.append(s("text", { x: x0 + i * slot + slot / 2, y: height - 12, class: "tick", "text-anchor": "middle" }, stepLabel(step)));
    }
  });
  return svg;
}

export function legend(groups) {
  const ul = document.createElement("ul");
  ul.className = "legend";
  groups.forEach((g, k) => {
    const li = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = `dot c${k % 9}`;
    li.append(dot, g);
    ul.append(li);
  });
  return ul;
}

// points: [{x, y, label}]; y in 0..1 (a rate), x in USD.
export function scatter(points, { xLabel = "x", yLabel = "y", formatX = (v) => v, label = "scatter" } = {}) {
  const width = pageWidth(), height = 300, x0 = 64, y0 = 250, y1 = 14, x1 = width - 90;
  const svg = frame(width, height, label);
  const maxX = niceMax(Math.max(...points.map((p) => p.x), 0));
  axisY(svg, 1, x0, y0, y1, x1, (v) => `${Math.round(v * 100)}%`);
  for (const f of [0, 0.5, 1]) {
    svg.append(s("text", { x: x0 + (x1 - x0) * f, y: y0 + 18, class: "tick", "text-anchor": "middle" }, formatX(maxX * f)));
  }
  svg.append(s("text", { x: (x0 + x1) / 2, y: height - 4, class: "axis", "text-anchor": "middle" }, xLabel));
  svg.append(s("text", { x: 12, y: (y0 + y1) / 2, class: "axis", "text-anchor": "middle", transform: `rotate(-90 12 ${(y0 + y1) / 2})` }, yLabel));
  points.forEach((p, k) => {
    const cx = x0 + ((x1 - x0) * p.x) / maxX, cy = y0 - (y0 - y1) * p.y;
    const dot = s("circle", { cx, cy, r: 6, class: `c${k % 9}` });
    dot.append(s("title", {}, `${p.label}: ${Math.round(p.y * 1000) / 10}% at ${formatX(p.x)}`));
    svg.append(dot, s("text", { x: cx + 9, y: cy + 4, class: "point" }, p.label));
  });
  return svg;
}
