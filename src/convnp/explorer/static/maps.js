// Panel 2: the feature-map visualiser. POST /api/forward gives every layer's output for the chosen input
// (a test image or a drawing, prepared by convnp as `convnp predict` prepares a picture), the logits and the
// probabilities; POST /api/filter a convolution's weights; POST /api/field the input pixels a unit sees.
import { api, decodeArray, fmt, el, showError, range, paint, unitAt, setState, drawingCanvas, paintInput, outline } from "./util.js";

export const forwardView = { model: null, reply: null, layers: [], input: null, filters: {}, selected: null, listeners: [], asked: 0 };

export function mapsSetModel(model, state) {
  forwardView.model = model;
  forwardView.filters = {};
  forwardView.selected = null;
  const select = document.getElementById("sample-select");
  select.replaceChildren(el("option", { value: "", text: model.samples.length ? "—" : "none on disk" }));
  for (const s of model.samples) select.append(el("option", { value: s.index, text: `#${s.index}: ${s.class}` }));
  const wanted = state && state.sample !== undefined && state.sample !== "" ? state.sample : (model.samples.length ? "0" : "");
  select.value = wanted;
  if (wanted !== "") return mapsForward({ sample: Number(wanted) });
  return null;
}

export async function mapsForward(request) {
  const errorNode = document.getElementById("page-error");
  const asked = ++forwardView.asked;  // only the latest request's answer is shown
  try {
    const reply = await api("/api/forward", request);
    if (asked !== forwardView.asked) return;
    showError(errorNode, null);
    forwardView.reply = reply;
    forwardView.request = request;
    forwardView.input = decodeArray(reply.display || reply.input);
    forwardView.layers = reply.layers.map((layer) => ({ ...layer, array: decodeArray(layer.output) }));
    mapsRender();
    for (const listener of forwardView.listeners) listener();
  } catch (error) {
    showError(errorNode, error.message);
  }
}

function mapRange(scale, layer, channel, all) {
  const size = layer.shape.length === 3 ? layer.shape[1] * layer.shape[2] : layer.array.data.length;
  if (scale === "map") return range(layer.array.data, channel * size, (channel + 1) * size);
  if (scale === "layer") return range(layer.array.data);
  return all;
}

function mapsRender() {
  const scale = document.getElementById("scale").value;
  paintInput(document.getElementById("input-canvas"), forwardView.input);
  const top = document.getElementById("top-k");
  top.replaceChildren(...forwardView.reply.top.map((t) => el("li", {
    "data-class": t.class, "data-probability": String(t.probability), text: `${t.class}   ${(t.probability * 100).toFixed(1)}%` })));
  let all = [Infinity, -Infinity];
  for (const layer of forwardView.layers) {
    const [lo, hi] = range(layer.array.data);
    all = [Math.min(all[0], lo), Math.max(all[1], hi)];
  }
  const container = document.getElementById("layers");
  container.replaceChildren();
  for (const layer of forwardView.layers) {
    const maps = el("div", { class: "maps" });
    const title = `${layer.index}. ${layer.name || "(model)"} · ${layer.type} · ${layer.shape.join("×")}`;
    const box = el("div", { class: "layer", id: `layer-${layer.index}` }, el("h3", { text: title }), maps);
    if (layer.shape.length === 3) {
      const [c, h, w] = layer.shape;
      for (let k = 0; k < c; k++) {
        const canvas = el("canvas", { "data-layer": layer.index, "data-channel": k, title: `channel ${k}` });
        const [lo, hi] = mapRange(scale, layer, k, all);
        paint(canvas, layer.array.data, k * h * w, h, w, lo, hi);
        canvas.addEventListener("mousemove", (event) => hover(event, layer, k));
        canvas.addEventListener("click", (event) => select(event, layer, k, canvas));
        maps.append(canvas);
      }
    } else {  // a vector (Flatten, Linear): one row of cells
      const n = layer.array.data.length;
      const canvas = el("canvas", { class: "bars", "data-layer": layer.index, "data-channel": 0 });
      const [lo, hi] = scale === "global" ? all : range(layer.array.data);
      paint(canvas, layer.array.data, 0, 1, n, lo, hi);
      canvas.addEventListener("mousemove", (event) => hover(event, layer, 0));
      canvas.addEventListener("click", (event) => select(event, layer, 0, canvas));
      maps.append(canvas);
    }
    container.append(box);
  }
}

function unitValue(layer, channel, unit) {
  if (layer.shape.length !== 3) return layer.array.data[unit[1]];
  const [, h, w] = layer.shape;
  return layer.array.data[channel * h * w + unit[0] * w + unit[1]];
}

function layerUnit(event, layer, canvas) {
  return layer.shape.length === 3 ? unitAt(event, canvas, layer.shape[1], layer.shape[2]) : unitAt(event, canvas, 1, layer.array.data.length);
}

function hover(event, layer, channel) {
  const unit = layerUnit(event, layer, event.target);
  const value = unitValue(layer, channel, unit);
  const where = layer.shape.length === 3 ? `channel ${channel}, row ${unit[0]}, col ${unit[1]}` : `unit ${unit[1]}`;
  const info = document.getElementById("hover-info");
  info.textContent = `${layer.name} (${layer.type}) ${where}: ${fmt(value)}`;
  info.dataset.value = String(value);
}

async function select(event, layer, channel, canvas) {
  for (const c of document.querySelectorAll(".maps canvas.selected")) c.classList.remove("selected");
  canvas.classList.add("selected");
  const unit = layerUnit(event, layer, canvas);
  const clicked = forwardView.clicks = (forwardView.clicks || 0) + 1;  // a newer click wins
  forwardView.selected = { layer: layer.index, channel, unit };
  setState({ layer: layer.index, channel });
  const view = document.getElementById("filter-view");
  view.replaceChildren(el("p", { id: "selected-unit", text: `${layer.name} channel ${channel} at (${unit[0]}, ${unit[1]}) = ${fmt(unitValue(layer, channel, unit))}` }));
  try {
    // the input pixels this unit can see
    const field = await api("/api/field", { layer: layer.index, unit });
    if (clicked !== forwardView.clicks) return;
    paintInput(document.getElementById("input-canvas"), forwardView.input);
    outline(document.getElementById("input-canvas"), field.box);
    view.append(el("p", { id: "field-text", "data-box": JSON.stringify(field.box),
      text: field.global ? "it sees the whole input" : `it sees input rows ${field.box[0]}-${field.box[2]}, columns ${field.box[1]}-${field.box[3]} (receptive field ${field.size.join("×")})` }));
    if (!layer.has_filter) return;
    if (!forwardView.filters[layer.index]) forwardView.filters[layer.index] = await api("/api/filter", { layer: layer.index });
    if (clicked !== forwardView.clicks) return;
    const f = forwardView.filters[layer.index];
    const weight = decodeArray(f.weight);
    const [, cin, kh, kw] = weight.shape;
    const slices = el("div", { id: "filter-slices" });
    const offset = channel * cin * kh * kw;
    const [lo, hi] = range(weight.data, offset, offset + cin * kh * kw);
    for (let c = 0; c < cin; c++) {
      const canvas = el("canvas", { title: `input channel ${c}`, "data-in-channel": c });
      paint(canvas, weight.data, offset + c * kh * kw, kh, kw, lo, hi);
      slices.append(canvas);
    }
    const bias = f.bias ? decodeArray(f.bias).data[channel] : null;
    view.append(el("p", { text: `filter ${channel}: ${cin} input-channel slice(s) of ${kh}×${kw}` + (bias === null ? "" : `, bias ${fmt(bias)}`) }), slices);
    view.append(windowTable(layer, weight, unit, f));
  } catch (error) {
    view.append(el("p", { class: "error", text: error.message }));
  }
}

// The input window of the selected unit: the values of the layer's input under each filter slice (up to 16
// input channels), beside the filter.
const MAX_WINDOW_CHANNELS = 16;

function windowTable(layer, weight, unit, f) {
  const source = layer.input_from >= 0 ? forwardView.layers[layer.input_from].array : decodeArray(forwardView.reply.input);
  const [, h, w] = source.shape;
  const [outChannels, cin, kh, kw] = weight.shape;
  const group = Math.floor(forwardView.selected.channel / (outChannels / f.groups));
  const top = unit[0] * f.stride[0] - f.padding[0], left = unit[1] * f.stride[1] - f.padding[1];
  const box = el("div", { id: "windows" }, el("p", { text: `its input window: rows ${top}-${top + (kh - 1) * f.dilation[0]}, ` +
    `columns ${left}-${left + (kw - 1) * f.dilation[1]} of the layer's input (shaded: padding)` +
    (cin > MAX_WINDOW_CHANNELS ? `; the first ${MAX_WINDOW_CHANNELS} of ${cin} input channels` : "") }));
  for (let c = 0; c < Math.min(cin, MAX_WINDOW_CHANNELS); c++) {
    const channel = group * cin + c;
    const table = el("table", { class: "grid window-table", id: c === 0 ? "window-table" : `window-table-${c}`, title: `input channel ${channel}` });
    for (let a = 0; a < kh; a++) {
      const tr = el("tr");
      for (let b = 0; b < kw; b++) {
        const i = top + a * f.dilation[0], j = left + b * f.dilation[1];
        const inside = i >= 0 && j >= 0 && i < h && j < w;
        const v = inside ? source.data[(channel * h + i) * w + j] : 0;
        tr.append(el("td", { class: inside ? "" : "pad", "data-value": String(v), text: fmt(v) }));
      }
      table.append(tr);
    }
    box.append(el("figure", { class: "window" }, el("figcaption", { text: `channel ${channel}` }), table));
  }
  return box;
}

export function mapsInit() {
  const select = document.getElementById("sample-select");
  select.addEventListener("change", () => {
    if (select.value === "") return;
    setState({ sample: select.value });
    mapsForward({ sample: Number(select.value) });
  });
  document.getElementById("scale").addEventListener("change", () => {
    setState({ scale: document.getElementById("scale").value });
    if (forwardView.reply) mapsRender();
  });
  let busy = false, again = false;
  const send = async () => {  // one request at a time; the latest drawing wins
    if (busy) { again = true; return; }
    busy = true;
    select.value = "";
    setState({ sample: null });
    await mapsForward({ drawing: drawing.pixels() });
    busy = false;
    if (again) { again = false; send(); }
  };
  let lastSent = 0;
  const drawing = drawingCanvas(document.getElementById("draw-canvas"),
    () => { if (performance.now() - lastSent > 150) { lastSent = performance.now(); send(); } },
    () => { send(); });
  document.getElementById("draw-clear").addEventListener("click", () => drawing.clear());
}
