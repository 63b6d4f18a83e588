// Regard attention explorer: ask /api/translate for every loaded model and draw
// each answer as a heat map with hover/tap alignment highlighting. Vanilla JS.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

const state = {
  models: [],        // from /api/models
  limits: null,
  view: "word",      // "word" or "subword"
  links: false,      // outline the links read off the attention (the argmax rule of regard align)
  panels: new Map(), // model name -> {response, selected, pinned}
  choices: new Map(), // Transformer model name -> {layer, head}: the cross-attention shown (head -1: their mean)
  request: 0,        // id of the latest translate request; older answers are dropped
};

// ---------------------------------------------------------------- colour

// matplotlib's "Blues", the colour map of `regard plot`.
const BLUES = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"]
  .map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));

function blue(w) {
  const x = Math.min(Math.max(w, 0), 1) * (BLUES.length - 1);
  const i = Math.min(Math.floor(x), BLUES.length - 2);
  const t = x - i;
  const rgb = BLUES[i].map((c, k) => Math.round(c + (BLUES[i + 1][k] - c) * t));
  return `rgb(${rgb.join(",")})`;
}

const fmt = (w) => (w >= 0.995 ? "1" : w.toFixed(2).replace(/^0/, ""));

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// A subword piece with its word-start marker "▁" shown faintly.
function pieceLabel(text) {
  if (!text.startsWith("\u2581")) return document.createTextNode(text);
  const rest = text.slice(1);
  return el("span", {}, el("span", { class: "ws", "aria-hidden": "true" }, "\u2581"), rest);
}

function label(text) {
  return state.view === "subword" ? pieceLabel(text) : document.createTextNode(text);
}

// ---------------------------------------------------------------- data for the current view

// The mean of equally shaped matrices (a layer's heads).
function meanOf(matrices) {
  return matrices[0].map((row, i) => row.map((_, j) => matrices.reduce((sum, m) => sum + m[i][j], 0) / matrices.length));
}

function viewOf(result, hyp, name) {
  const words = state.view === "word";
  const heads = words ? hyp.head_word_attention : hyp.head_attention;
  const choice = state.choices.get(name);
  let matrix = words ? hyp.word_attention : hyp.attention;
  if (heads && heads.length && choice) {
    const layer = heads[choice.layer];
    matrix = choice.head >= 0 ? layer[choice.head] : meanOf(layer);
  }
  return { src: words ? result.source_words : result.source_tokens, tgt: words ? hyp.target_words : hyp.tokens, matrix };
}

// A Transformer's layer and head selectors (one head, or the mean of the layer's heads).
function headPicker(info) {
  const choice = state.choices.get(info.name);
  const option = (value, text, selected) => el("option", { value, selected: selected ? "" : null }, text);
  const layers = Array.from({ length: info.layers }, (_, i) => option(i, `layer ${i + 1}`, i === choice.layer));
  const heads = [option(-1, "all heads (mean)", choice.head < 0),
    ...Array.from({ length: info.heads }, (_, h) => option(h, `head ${h + 1}`, h === choice.head))];
  return el("span", { class: "head-picker" },
    el("select", { class: "pick", "data-model": info.name, "data-pick": "layer", "aria-label": "decoder layer" }, layers),
    el("select", { class: "pick", "data-model": info.name, "data-pick": "head", "aria-label": "attention head" }, heads));
}

function argmax(values) {
  let best = 0;
  values.forEach((v, i) => { if (v > values[best]) best = i; });
  return best;
}

// ---------------------------------------------------------------- rendering

function wordLine(units, side, lang) {
  return el("p", { class: `sentence ${side}`, lang },
    el("span", { class: "side-label" }, side === "src" ? "EN" : "FR"),
    el("span", { class: "units" },
      units.map((unit, k) => el("span", { class: "unit", "data-side": side, "data-k": k, tabindex: 0 }, label(unit)))));
}

// The links of the argmax rule (regard.alignment.links): each target unit (row) to the source
// unit it attends to most, as the column of each row (the first of equal weights, as there).
function argmaxLinks(matrix) {
  return matrix.map((row) => argmax(row));
}

function heatmap(view) {
  const { src, tgt, matrix } = view;
  const links = state.links ? argmaxLinks(matrix) : [];
  const head = el("tr", {}, el("th", { class: "corner", scope: "col" },
    el("span", { class: "axis-fr" }, "FR ↓"), el("span", { class: "axis-en" }, "EN →")));
  src.forEach((unit, j) => head.append(
    el("th", { class: "unit src-label", scope: "col", "data-side": "src", "data-k": j }, el("span", {}, label(unit)))));
  const body = tgt.map((unit, i) => el("tr", {},
    el("th", { class: "unit tgt-label", scope: "row", "data-side": "tgt", "data-k": i }, label(unit)),
    matrix[i].map((w, j) => el("td", {
      "data-i": i, "data-j": j, title: `${unit} ← ${src[j]}: ${w.toFixed(3)}`,
      class: [w > 0.55 ? "dark" : "", links[i] === j ? "link" : ""].join(" ").trim(), style: `background:${blue(w)}`,
    }, el("span", { class: "value" }, w >= 0.1 ? fmt(w) : "")))));
  return el("div", { class: "heatmap-scroll" },
    el("table", { class: "heatmap" }, el("thead", {}, head), el("tbody", {}, body)));
}

// Size the cells so the heat map fits its panel (down to a minimum, then it scrolls);
// English labels stay horizontal when they fit a cell, and stand upright otherwise.
function fitHeatmap(scroll) {
  const table = scroll.querySelector("table");
  const labels = [...table.querySelectorAll("th.src-label span")];
  const rowLabel = table.querySelector("tbody th");
  if (!labels.length || !rowLabel) return;
  table.classList.remove("vertical", "compact");
  table.style.removeProperty("--cell");
  const spacing = 2 * (labels.length + 2);
  const share = Math.floor((scroll.clientWidth - rowLabel.offsetWidth - spacing) / labels.length);
  const widest = Math.max(...labels.map((span) => span.offsetWidth)) + 10;
  const horizontal = widest <= share;
  const cell = horizontal ? Math.min(share, Math.max(widest, 48)) : Math.max(22, Math.min(48, share));
  table.style.setProperty("--cell", `${cell}px`);
  table.classList.toggle("compact", cell < 32);
  table.classList.toggle("vertical", !horizontal);
}

function fitAll() {
  document.querySelectorAll(".heatmap-scroll").forEach(fitHeatmap);
}

function legend() {
  return el("div", { class: "legend", "aria-hidden": "true" },
    el("span", {}, "0"), el("span", { class: "ramp" }), el("span", {}, "1"),
    el("span", { class: "legend-text" }, "attention weight"),
    state.links ? el("span", { class: "legend-link" }, "link: the strongest weight of its row") : null);
}

function nbestList(name, result, selected) {
  if (result.hypotheses.length < 2) return null;
  return el("div", { class: "nbest" },
    el("h3", {}, `${result.hypotheses.length} best`),
    el("ol", {}, result.hypotheses.map((hyp, i) => el("li", {},
      el("button", { type: "button", class: "hyp", "data-model": name, "data-index": i, "aria-pressed": String(i === selected) },
        el("span", { class: "hyp-text" }, hyp.text || "(empty)"),
        el("span", { class: "hyp-score", title: "length-normalised log-probability" }, Number.isFinite(hyp.score) ? hyp.score.toFixed(3) : "–"))))));
}

function renderPanel(name) {
  const info = state.models.find((m) => m.name === name);
  const panel = state.panels.get(name);
  const node = el("article", { class: "panel", "data-model": name });
  node.append(el("header", { class: "panel-head" },
    el("h2", {}, name),
    el("span", { class: `badge${info.has_attention ? "" : " muted"}` }, `attention: ${info.attention}`),
    state.choices.has(name) ? headPicker(info) : null,
    panel.response ? el("span", { class: "meta" }, `beam ${panel.response.beam}`) : null));
  if (panel.error) {
    node.append(el("p", { class: "error" }, panel.error));
    return node;
  }
  if (!panel.response) {
    node.append(el("p", { class: "pending" }, "translating…"));
    return node;
  }
  const result = panel.response.results[0];
  const hyp = result.hypotheses[panel.selected];
  node.append(el("p", { class: "translation", lang: "fr" }, hyp.text || "(empty translation)"));
  if (!panel.response.has_attention) {
    node.append(el("p", { class: "no-attention" },
      el("strong", {}, "This model has no attention."),
      " It reads the whole English sentence into one fixed vector before writing French, " +
      "so there is no alignment to draw."));
  } else {
    const view = viewOf(result, hyp, name);
    node.append(el("div", { class: "sentences" }, wordLine(view.src, "src", "en"), wordLine(view.tgt, "tgt", "fr")));
    node.append(heatmap(view), legend());
  }
  const list = nbestList(name, result, panel.selected);
  if (list) node.append(list);
  return node;
}

function render() {
  const results = $("#results");
  results.replaceChildren(...[...state.panels.keys()].map(renderPanel));
  results.classList.toggle("single", state.panels.size === 1);
  fitAll();
  for (const [name, panel] of state.panels) {
    if (panel.pinned) highlight(name, panel.pinned.side, panel.pinned.k);
  }
}

// ---------------------------------------------------------------- highlighting

function clearHighlight(node) {
  node.classList.remove("focused");
  node.querySelectorAll(".lit, .top, .focus, .cross").forEach((e) => {
    e.classList.remove("lit", "top", "focus", "cross");
    e.style.removeProperty("--w");
  });
}

// Focus unit k on one side: light up the other side's units by their weight.
function highlight(name, side, k) {
  const node = $(`.panel[data-model="${name}"]`);
  const panel = state.panels.get(name);
  if (!node || !panel || !panel.response || !panel.response.has_attention) return;
  const result = panel.response.results[0];
  const { matrix } = viewOf(result, result.hypotheses[panel.selected], name);
  const other = side === "tgt" ? "src" : "tgt";
  const weights = side === "tgt" ? matrix[k] : matrix.map((row) => row[k]);
  if (!weights || !weights.length) return;
  clearHighlight(node);
  node.classList.add("focused");
  const top = argmax(weights);
  node.querySelectorAll(`[data-side="${side}"][data-k="${k}"]`).forEach((e) => e.classList.add("focus"));
  weights.forEach((w, j) => node.querySelectorAll(`[data-side="${other}"][data-k="${j}"]`).forEach((e) => {
    e.style.setProperty("--w", w.toFixed(3));
    e.classList.add("lit");
    if (j === top) e.classList.add("top");
  }));
  node.querySelectorAll(side === "tgt" ? `td[data-i="${k}"]` : `td[data-j="${k}"]`)
    .forEach((e) => e.classList.add("cross"));
}

function unitOf(event) {
  const unit = event.target.closest("[data-side][data-k]");
  const panel = event.target.closest(".panel");
  if (!unit || !panel) return null;
  return { name: panel.dataset.model, side: unit.dataset.side, k: Number(unit.dataset.k) };
}

function cellOf(event) {
  const cell = event.target.closest("td[data-i]");
  const panel = event.target.closest(".panel");
  return cell && panel ? { name: panel.dataset.model, i: Number(cell.dataset.i) } : null;
}

function onPointerOver(event) {
  const hit = unitOf(event) || (() => { const c = cellOf(event); return c && { name: c.name, side: "tgt", k: c.i }; })();
  if (hit && !state.panels.get(hit.name)?.pinned) highlight(hit.name, hit.side, hit.k);
}

function onPointerOut(event) {
  const panelNode = event.target.closest(".panel");
  if (!panelNode || panelNode.contains(event.relatedTarget)) return;
  const panel = state.panels.get(panelNode.dataset.model);
  if (panel && !panel.pinned) clearHighlight(panelNode);
}

// Click or tap pins a unit (tap again to unpin); clicking a hypothesis shows its attention.
function onClick(event) {
  const hyp = event.target.closest("button.hyp");
  if (hyp) {
    const panel = state.panels.get(hyp.dataset.model);
    panel.selected = Number(hyp.dataset.index);
    panel.pinned = null;
    render();
    return;
  }
  const hit = unitOf(event);
  if (!hit) return;
  const panel = state.panels.get(hit.name);
  const same = panel.pinned && panel.pinned.side === hit.side && panel.pinned.k === hit.k;
  panel.pinned = same ? null : { side: hit.side, k: hit.k };
  if (panel.pinned) highlight(hit.name, hit.side, hit.k);
  else clearHighlight($(`.panel[data-model="${hit.name}"]`));
}

// A layer or head chosen: redraw that model's heat map.
function onPick(event) {
  const select = event.target.closest("select.pick");
  if (!select) return;
  const choice = state.choices.get(select.dataset.model);
  choice[select.dataset.pick] = Number(select.value);
  state.panels.get(select.dataset.model).pinned = null;
  render();
}

function onKey(event) {
  if ((event.key === "Enter" || event.key === " ") && event.target.matches(".unit[tabindex]")) {
    event.preventDefault();
    onClick(event);
  }
}

// ---------------------------------------------------------------- talking to the API

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function translate() {
  const text = $("#text").value.trim();
  if (!text) {
    setStatus("Type an English sentence first.", true);
    return;
  }
  const id = ++state.request;
  const beam = Number($("#beam").value);
  const nbest = Number($("#nbest").value);
  state.panels = new Map(state.models.map((m) => [m.name, { response: null, selected: 0, pinned: null }]));
  render();
  setStatus("Translating…");
  document.body.classList.add("busy");
  const started = performance.now();
  const jobs = state.models.map(async (m) => {
    try {
      const body = { text, beam, nbest, model: m.name };
      if (state.choices.has(m.name)) body.heads = true; // a Transformer: every layer's heads, for the selectors
      const response = await api("/api/translate", body);
      if (id === state.request) state.panels.get(m.name).response = response;
    } catch (err) {
      if (id === state.request) state.panels.get(m.name).error = err.message;
    }
    if (id === state.request) render();
  });
  await Promise.all(jobs);
  if (id !== state.request) return;
  document.body.classList.remove("busy");
  const failed = [...state.panels.values()].filter((p) => p.error);
  if (failed.length === state.panels.size) setStatus(failed[0].error, true);
  else setStatus(`Translated in ${Math.round(performance.now() - started)} ms. Hover or tap a word to see its alignment.`);
}

// ---------------------------------------------------------------- controls

function fillSelect(select, max, value) {
  select.replaceChildren(...Array.from({ length: max }, (_, i) => el("option", { value: i + 1 }, String(i + 1))));
  select.value = String(Math.min(Math.max(value, 1), max));
}

function toggleLinks() {
  state.links = !state.links;
  $("#links").setAttribute("aria-pressed", String(state.links));
  render();
}

function setView(view) {
  state.view = view;
  document.querySelectorAll(".toggle button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === view)));
  for (const panel of state.panels.values()) panel.pinned = null;
  render();
}

async function init() {
  try {
    const info = await api("/api/models");
    state.models = info.models;
    state.limits = info.limits;
  } catch (err) {
    setStatus(`Cannot reach the server: ${err.message}`, true);
    return;
  }
  for (const m of state.models) {
    if (m.arch === "transformer" && m.has_attention) state.choices.set(m.name, { layer: m.attention_layer - 1, head: -1 });
  }
  const byDefault = state.models.find((m) => m.default) || state.models[0];
  fillSelect($("#beam"), state.limits.max_beam, byDefault.beam);
  fillSelect($("#nbest"), Number($("#beam").value), 1);
  $("#text").maxLength = state.limits.max_chars;
  $("#beam").addEventListener("change", () => {
    fillSelect($("#nbest"), Number($("#beam").value), Number($("#nbest").value));
    if ($("#text").value.trim()) translate();
  });
  $("#nbest").addEventListener("change", () => { if ($("#text").value.trim()) translate(); });
  $("#ask").addEventListener("submit", (event) => { event.preventDefault(); translate(); });
  document.querySelectorAll(".toggle button").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
  $("#links").addEventListener("click", toggleLinks);
  document.querySelectorAll("button.example").forEach((b) => b.addEventListener("click", () => {
    $("#text").value = b.textContent;
    translate();
  }));
  const results = $("#results");
  results.addEventListener("pointerover", onPointerOver);
  results.addEventListener("pointerout", onPointerOut);
  results.addEventListener("click", onClick);
  results.addEventListener("keydown", onKey);
  results.addEventListener("change", onPick);
  results.addEventListener("focusin", (event) => {
    const hit = unitOf(event);
    if (hit && !state.panels.get(hit.name)?.pinned) highlight(hit.name, hit.side, hit.k);
  });
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; fitAll(); });
  });
  const names = state.models.map((m) => m.name).join(" and ");
  setStatus(`${state.models.length > 1 ? "Models" : "Model"} ${names} ready.`);
  document.body.classList.add("ready");
}

document.addEventListener("DOMContentLoaded", init);
