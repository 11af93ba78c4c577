// The Skewless UI: one request for /ui/api/overview, drawn as tables and
// SVG histograms. No framework, nothing fetched but this server's JSON.
"use strict";

const COLORS = { stored: "var(--stored)", training: "var(--training)", served: "var(--served)" };
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function table(id, headings, rows) {
  const target = document.getElementById(id);
  target.replaceChildren(el("tr", {}, ...headings.map((h) => el("th", {}, h))));
  for (const row of rows) target.append(el("tr", {}, ...row.map((cell) => el("td", {}, cell))));
}

function number(x) {
  if (x === null || x === undefined) return "–";
  if (Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-3)) return x.toExponential(3);
  return String(Math.round(x * 1e4) / 1e4);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  for (const [unit, size] of units) if (Math.abs(seconds) >= size) return (seconds / size).toFixed(1) + " " + unit;
  return seconds.toFixed(1) + " s";
}

function tags(object) {
  const span = el("span");
  for (const [k, v] of Object.entries(object || {})) span.append(el("span", { class: "tag" }, k + "=" + v));
  return span;
}

// A histogram per series on shared bins, as shares so sizes compare.
function histogram(distribution) {
  const width = 320, height = 120, pad = 18;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + pad}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height + pad);
  svg.setAttribute("role", "img");
  const series = Object.entries(distribution.series);
  const shares = series.map(([name, counts]) => {
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    return [name, counts.map((c) => c / total)];
  });
  const top = Math.max(1e-9, ...shares.flatMap(([, s]) => s));
  const bins = distribution.bins.length;
  const slot = width / bins;
  shares.forEach(([name, values], k) => {
    const barWidth = (slot - 2) / shares.length;
    values.forEach((share, i) => {
      const bar = document.createElementNS(SVG, "rect");
      const h = (share / top) * height;
      bar.setAttribute("x", i * slot + 1 + k * barWidth);
      bar.setAttribute("y", height - h);
      bar.setAttribute("width", Math.max(barWidth, 1));
      bar.setAttribute("height", h);
      bar.setAttribute("fill", COLORS[name]);
      bar.setAttribute("data-series", name);
      const title = document.createElementNS(SVG, "title");
      const [low, high] = distribution.bins[i];
      title.textContent = `${name}: ${(share * 100).toFixed(1)}% in [${number(low)}, ${number(high)})`;
      bar.append(title);
      svg.append(bar);
    });
  });
  const axis = (x, text, anchor) => {
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x);
    label.setAttribute("y", height + pad - 4);
    label.setAttribute("font-size", "11");
    label.setAttribute("fill", "#5d6575");
    label.setAttribute("text-anchor", anchor);
    label.textContent = text;
    svg.append(label);
  };
  axis(0, number(distribution.bins[0][0]), "start");
  axis(width, number(distribution.bins[bins - 1][1]), "end");
  return svg;
}

function render(o) {
  document.getElementById("project").textContent = o.project;
  table("entities", ["entity", "join keys", "description", "views"], o.entities.map((e) => [
    e.name, e.join_keys.map(([k, t]) => `${k}: ${t}`).join(", "), e.description, e.views.join(", "),
  ]));
  table("views", ["view", "kind", "reads", "features", "owner", "tags", "digest", "used by"], o.views.map((v) => [
    el("strong", {}, v.name),
    v.kind,
    [...v.entities, ...v.reads].join(", "),
    v.features.map(([f, t]) => `${f}: ${t}`).join(", "),
    v.owner,
    tags(v.tags),
    el("span", { class: "digest", title: v.digest }, v.digest.slice(0, 12)),
    [...v.used_by_services.map((s) => "service " + s), ...v.used_by_views.map((s) => "view " + s)].join(", "),
  ]));
  table("services", ["service", "features", "description"], o.services.map((s) => [s.name, s.features.join(", "), s.description]));
  table("health", ["view", "kind", "stored rows", "freshness", "skew checked", "skew mismatches"], o.views.map((v) => [
    v.name, v.kind, v.stored_rows ?? "–", age(v.freshness_secs), v.skew_checked,
    el("span", { class: v.skew_mismatches > 0 ? "bad" : "good" }, v.skew_mismatches),
  ]));

  const legend = document.getElementById("legend");
  legend.replaceChildren("Shares of values per bin:");
  for (const name of ["stored", "training", "served"]) {
    legend.append(el("span", { class: "swatch", style: `background:${COLORS[name]}` }), name);
  }
  if (o.training_set) legend.append(` (training set: ${o.training_set})`);
  const plots = document.getElementById("plots");
  plots.replaceChildren();
  for (const d of o.distributions) {
    const s = d.stored;
    const figures = s
      ? `${s.count} values, ${s.nulls} null, ~${s.distinct} distinct, mean ${number(s.mean)}, stddev ${number(s.stddev)}, p50 ${number((s.quantiles.find(([q]) => q === 0.5) || [])[1])}`
      : "";
    const card = el("div", { class: "plot", "data-feature": `${d.view}:${d.feature}` },
      el("h4", {}, `${d.view}:${d.feature} `, el("span", { class: "note" }, d.data_type)),
      el("div", { class: "figures" }, figures));
    if (d.bins.length > 0) card.append(histogram(d));
    for (const [name, top] of Object.entries(d.top)) {
      card.append(el("div", { class: "figures" }, `${name}: ` + top.map(([v, n]) => `${v} (${n})`).join(", ")));
    }
    plots.append(card);
  }

  const drift = o.drift;
  document.getElementById("drift-source").textContent = drift
    ? `${drift.compared} against ${drift.baseline}, at ${new Date(drift.computed_at / 1000).toISOString()}`
    : "No drift report yet: run `skewless drift --baseline TRAINING.parquet`.";
  table("drift-table", ["feature", "baseline rows", "compared rows", "PSI", "KS", "null rate", "crossed"], (drift ? drift.features : []).map((f) => [
    `${f.view}:${f.feature}`, f.baseline_rows, f.compared_rows, number(f.psi), number(f.ks),
    `${(f.baseline_null_rate * 100).toFixed(1)}% → ${(f.compared_null_rate * 100).toFixed(1)}%`,
    el("span", { class: f.crossed.length ? "bad" : "good" }, f.crossed.length ? f.crossed.join("; ") : "no"),
  ]));
}

async function load() {
  const status = document.getElementById("status");
  const token = localStorage.getItem("skewless-token");
  const response = await fetch("/ui/api/overview", { headers: token ? { Authorization: "Bearer " + token } : {} });
  if (response.status === 401 || response.status === 403) {
    status.textContent = "The server asks for credentials.";
    document.getElementById("login").hidden = false;
    return;
  }
  if (!response.ok) {
    status.textContent = `The server answered ${response.status}.`;
    return;
  }
  render(await response.json());
  status.textContent = "Updated " + new Date().toLocaleTimeString();
  status.setAttribute("data-loaded", "true");
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("skewless-token", document.getElementById("token").value.trim());
  document.getElementById("login").hidden = true;
  load();
});

load();
