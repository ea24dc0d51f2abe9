// Panel 5: live training (convnp train --explore). GET /api/live every second: loss and accuracy curves,
// the learning rate, each layer's weights, gradients and activations (pictures and min/mean/max),
// images/s and ETA; "open" loads the run's latest checkpoint into panels 2-3 (POST /api/live/open).
import { api, decodeArray, el, fmt, range, paint } from "./util.js";

const liveView = { timer: null, onOpen: null, last: null };

function plot(canvas, series, logScale = false) {
  const context = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 34;
  context.clearRect(0, 0, w, h);
  context.fillStyle = "#fff"; context.fillRect(0, 0, w, h);
  const points = series.flatMap((s) => s.x.map((x, i) => [x, s.y[i]])).filter((p) => Number.isFinite(p[1]));
  if (!points.length) return;
  const tf = (v) => (logScale ? Math.log10(Math.max(v, 1e-12)) : v);
  const [x0, x1] = range(points.map((p) => p[0])), [y0, y1] = range(points.map((p) => tf(p[1])));
  const X = (x) => pad + (w - pad - 8) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5);
  const Y = (y) => h - pad + 8 - (h - pad) * (y1 > y0 ? (tf(y) - y0) / (y1 - y0) : 0.5);
  context.strokeStyle = "#99a"; context.strokeRect(pad, 8, w - pad - 8, h - pad);
  context.fillStyle = "#445"; context.font = "11px sans-serif";
  context.fillText(fmt(logScale ? 10 ** y1 : y1), 2, 16); context.fillText(fmt(logScale ? 10 ** y0 : y0), 2, h - pad + 8);
  context.fillText(fmt(x0), pad, h - 8); context.fillText(fmt(x1), w - 40, h - 8);
  series.forEach((s, k) => {
    context.strokeStyle = s.colour; context.fillStyle = s.colour; context.lineWidth = 1.5;
    context.beginPath();
    s.x.forEach((x, i) => { if (i === 0) context.moveTo(X(x), Y(s.y[i])); else context.lineTo(X(x), Y(s.y[i])); });
    context.stroke();
    if (s.x.length < 60) s.x.forEach((x, i) => context.fillRect(X(x) - 2, Y(s.y[i]) - 2, 4, 4));
    context.fillText(s.label, w - 150, 22 + 13 * k);
  });
}

function stats(s) {
  return s ? `${fmt(s.min)} / ${fmt(s.mean)} / ${fmt(s.max)}` : "—";
}

function picture(encoded) {
  const array = decodeArray(encoded);
  const canvas = el("canvas");
  if (!array) return canvas;
  const shape = array.shape;
  const h = shape.length === 3 ? shape[1] : shape[0], w = shape.length === 3 ? shape[2] : shape[1];
  const n = shape.length === 3 ? shape[0] : 1;
  const [lo, hi] = range(array.data);
  // maps side by side
  const strip = new Float32Array(h * w * n);
  for (let k = 0; k < n; k++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) strip[i * w * n + k * w + j] = array.data[k * h * w + i * w + j];
  paint(canvas, strip, 0, h, w * n, lo, hi);
  canvas.style.width = Math.min(360, 28 * n * w / h) + "px";
  return canvas;
}

function liveRender(snapshot) {
  const status = document.getElementById("live-status");
  document.getElementById("live-open").disabled = !snapshot.checkpoint;
  if (!snapshot.active) return;
  status.textContent = (snapshot.finished ? "training finished" : snapshot.running ? "training" : "starting") +
    `: epoch ${Math.min(snapshot.epoch + (snapshot.running ? 1 : 0), snapshot.epochs)}/${snapshot.epochs}, step ${snapshot.step}/${snapshot.steps_per_epoch}` +
    (snapshot.images_per_s ? `, ${fmt(snapshot.images_per_s)} images/s` : "") +
    (snapshot.eta_s !== null && snapshot.eta_s !== undefined ? `, ETA ${fmt(snapshot.eta_s)} s` : "") +
    (snapshot.checkpoint ? `; latest checkpoint ${snapshot.checkpoint}` : "");
  status.dataset.step = snapshot.batches.step.length ? snapshot.batches.step[snapshot.batches.step.length - 1] : 0;
  const history = snapshot.history || {};
  const epochs = (history.epoch || []).map((e) => e * snapshot.steps_per_epoch);
  plot(document.getElementById("live-loss"), [
    { x: snapshot.batches.step, y: snapshot.batches.loss, colour: "#9ab", label: "batch loss" },
    { x: epochs, y: history.train_loss || [], colour: "#1f5fbf", label: "train (epoch)" },
    { x: epochs, y: history.val_loss || [], colour: "#d0522b", label: "validation" }]);
  plot(document.getElementById("live-acc"), [
    { x: epochs, y: history.train_accuracy || [], colour: "#1f5fbf", label: "train" },
    { x: epochs, y: history.val_accuracy || [], colour: "#d0522b", label: "validation" }]);
  plot(document.getElementById("live-lr"), [{ x: snapshot.batches.step, y: snapshot.batches.lr, colour: "#2a8a3a", label: "lr" }]);
  const table = document.getElementById("live-layers");
  table.replaceChildren(el("tr", {}, ...["layer", "weights", "weights min / mean / max", "gradients", "gradient min / mean / max",
    "activations", "activations min / mean / max"].map((text) => el("th", { text }))));
  for (const layer of snapshot.layers) {
    table.append(el("tr", { "data-layer": layer.name },
      el("td", { text: `${layer.name} (${layer.type})` }), el("td", {}, picture(layer.weight_picture)),
      el("td", { class: "weight-stats", text: stats(layer.weight) }), el("td", {}, picture(layer.grad_picture)),
      el("td", { class: "grad-stats", text: stats(layer.grad) }),
      el("td", {}, picture(layer.activation_picture)), el("td", { text: stats(layer.activation) })));
  }
}

async function livePoll() {
  try {
    const snapshot = await api("/api/live");
    liveView.last = snapshot;
    liveRender(snapshot);
    if (snapshot.finished && liveView.timer) { clearInterval(liveView.timer); liveView.timer = null; }
  } catch (error) {
    document.getElementById("live-status").textContent = "the server stopped (" + error.message + ")";
    if (liveView.timer) { clearInterval(liveView.timer); liveView.timer = null; }
  }
}

export function liveStart() {
  if (!liveView.timer) { livePoll(); liveView.timer = setInterval(livePoll, 1000); }
}

export function liveInit(onOpen) {
  document.getElementById("live-open").addEventListener("click", async () => {
    const status = document.getElementById("live-status");
    try {
      const model = await api("/api/live/open", {});
      await onOpen(model);
      status.textContent = `opened ${model.source} in panels 2-3`;
    } catch (error) {
      status.textContent = error.message;
    }
  });
}
