// Panel 1: the convolution explorer. The window slides over the (padded) input; the output fills in one
// pixel at a time; the dot product at the current position is written out term by term. Every number is
// from POST /api/conv (convnp.functional.conv2d and the products of the window it sums).
import { api, decodeArray, fmt, el, showError, colour, range, getState, setState, drawingCanvas } from "./util.js";

const convView = { reply: null, position: -1, timer: null, drawing: null, drawn: null, asked: 0 };

function convRequest() {
  const kernel = document.getElementById("conv-kernel").value;
  const input = document.getElementById("conv-input").value;
  const request = {
    input: input === "drawn" ? { drawing: convView.drawn } : input,
    kernel: kernel === "custom" ? parseKernel(document.getElementById("conv-custom").value) : kernel,
    stride: Number(document.getElementById("conv-stride").value),
    padding: Number(document.getElementById("conv-padding").value),
  };
  return request;
}

function parseKernel(text) {  // the typed rows of numbers, as the user wrote them (convnp checks them)
  return text.trim().split(/\n+/).map((line) => line.trim().split(/[\s,]+/).map(Number));
}

export async function convUpdate() {
  const errorNode = document.getElementById("conv-error");
  const input = document.getElementById("conv-input").value;
  document.getElementById("conv-draw-box").hidden = input !== "drawn";
  document.getElementById("conv-custom-label").hidden = document.getElementById("conv-kernel").value !== "custom";
  convStop();
  setState({ kernel: document.getElementById("conv-kernel").value, input,
    custom: document.getElementById("conv-kernel").value === "custom" ? document.getElementById("conv-custom").value.trim().replace(/\n/g, ";") : null,
    stride: document.getElementById("conv-stride").value, padding: document.getElementById("conv-padding").value });
  if (input === "drawn" && !convView.drawn) { showError(errorNode, "draw something, then press \"use drawing\""); return; }
  const asked = ++convView.asked;  // only the latest request's answer is shown
  try {
    const reply = await api("/api/conv", convRequest());
    if (asked !== convView.asked) return;
    convView.reply = {
      padded: decodeArray(reply.padded), kernel: decodeArray(reply.kernel), output: decodeArray(reply.output),
      windows: decodeArray(reply.windows), products: decodeArray(reply.products),
      stride: reply.stride, padding: reply.padding,
    };
    showError(errorNode, null);
    convView.position = -1;
    convRender();
  } catch (error) {
    if (asked !== convView.asked) return;
    convView.reply = null;
    showError(errorNode, error.message);
    for (const id of ["conv-image", "conv-output", "conv-kernel-grid"]) document.getElementById(id).replaceChildren();
    document.getElementById("conv-terms").textContent = "";
    document.getElementById("conv-position").textContent = "";
  }
}

function gridTable(table, array, cellClass, cellText) {
  const [h, w] = array.shape;
  const [lo, hi] = range(array.data);
  table.replaceChildren();
  for (let i = 0; i < h; i++) {
    const tr = el("tr");
    for (let j = 0; j < w; j++) {
      const v = array.data[i * w + j];
      const td = el("td", { "data-row": i, "data-col": j, "data-value": String(v), text: cellText(i, j, v) });
      const cls = cellClass(i, j);
      if (cls) td.className = cls;
      if (!cls || !cls.includes("empty")) {
        const [r, g, b] = colour(v, Math.min(lo, 0), Math.max(hi, 0) || 1);
        td.style.background = `rgb(${r}, ${g}, ${b})`;
      }
      tr.append(td);
    }
    table.append(tr);
  }
}

function convRender() {
  const r = convView.reply;
  if (!r) return;
  const [ho, wo] = r.output.shape;
  const k = r.kernel.shape[0];
  const p = convView.position;
  const row = p >= 0 ? Math.floor(p / wo) : -1, col = p >= 0 ? p % wo : -1;
  const [hp, wp] = r.padded.shape;
  gridTable(document.getElementById("conv-image"), r.padded, (i, j) => {
    const classes = [];
    if (i < r.padding || j < r.padding || i >= hp - r.padding || j >= wp - r.padding) classes.push("pad");
    if (p >= 0 && i >= row * r.stride && i < row * r.stride + k && j >= col * r.stride && j < col * r.stride + k) classes.push("window");
    return classes.join(" ");
  }, (i, j, v) => fmt(v));
  gridTable(document.getElementById("conv-kernel-grid"), r.kernel, () => "", (i, j, v) => fmt(v));
  gridTable(document.getElementById("conv-output"), r.output,
    (i, j) => (i * wo + j > p ? "empty" : i * wo + j === p ? "current" : ""), (i, j, v) => fmt(v));
  const position = document.getElementById("conv-position");
  const terms = document.getElementById("conv-terms");
  if (p < 0) {
    position.textContent = `output ${ho}x${wo}: press step or play to slide the ${k}x${k} window (stride ${r.stride}, padding ${r.padding})`;
    terms.textContent = "";
    return;
  }
  position.textContent = `position (${row}, ${col}) of ${ho}x${wo}: window rows ${row * r.stride}-${row * r.stride + k - 1}, columns ${col * r.stride}-${col * r.stride + k - 1} of the padded input`;
  const base = p * k * k;
  const parts = [];
  for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) {
    const x = r.windows.data[base + a * k + b];
    parts.push(`${fmt(r.kernel.data[a * k + b])}×${fmt(x)}`);
  }
  const value = r.output.data[p];
  terms.replaceChildren(
    el("span", { id: "conv-sum-terms", text: parts.join(" + ").replace(/\+ -/g, "− ") }),
    el("span", { text: " = " }),
    el("strong", { id: "conv-sum", "data-value": String(value), text: fmt(value) }),
    el("span", { text: "  (products: " + Array.from(r.products.data.subarray(base, base + k * k), fmt).join(", ") + ")" }));
}

function convStep() {
  const r = convView.reply;
  if (!r) return false;
  const total = r.output.shape[0] * r.output.shape[1];
  if (convView.position >= total - 1) return false;
  convView.position += 1;
  convRender();
  return true;
}

function convStop() {
  if (convView.timer) clearInterval(convView.timer);
  convView.timer = null;
  document.getElementById("conv-play").textContent = "play";
}

export async function convInit(presets, state) {
  const kernelSelect = document.getElementById("conv-kernel");
  for (const [key, kernel] of Object.entries(presets.kernels)) kernelSelect.append(el("option", { value: key, text: kernel.label }));
  kernelSelect.append(el("option", { value: "custom", text: "your own (type it)" }));
  const inputSelect = document.getElementById("conv-input");
  for (const [key, label] of Object.entries(presets.conv_inputs)) inputSelect.append(el("option", { value: key, text: label }));
  inputSelect.append(el("option", { value: "digit", text: "a test digit (14x14)" }));
  inputSelect.append(el("option", { value: "drawn", text: "one you draw (14x14)" }));
  if (state.kernel) kernelSelect.value = state.kernel;
  if (state.input && state.input !== "drawn") inputSelect.value = state.input;
  if (state.custom) document.getElementById("conv-custom").value = state.custom.replace(/;/g, "\n");
  if (state.stride) document.getElementById("conv-stride").value = state.stride;
  if (state.padding) document.getElementById("conv-padding").value = state.padding;
  for (const id of ["conv-kernel", "conv-input", "conv-stride", "conv-padding", "conv-custom"]) {
    document.getElementById(id).addEventListener("change", convUpdate);
  }
  document.getElementById("conv-step").addEventListener("click", () => { convStop(); convStep(); });
  document.getElementById("conv-reset").addEventListener("click", () => { convStop(); convView.position = -1; convRender(); });
  document.getElementById("conv-play").addEventListener("click", () => {
    if (convView.timer) { convStop(); return; }
    document.getElementById("conv-play").textContent = "pause";
    const speed = Math.max(10, Number(document.getElementById("conv-speed").value) || 350);
    convView.timer = setInterval(() => { if (!convStep()) convStop(); }, speed);
  });
  convView.drawing = drawingCanvas(document.getElementById("conv-draw"), null, null, 12);
  document.getElementById("conv-draw-clear").addEventListener("click", () => convView.drawing.clear());
  document.getElementById("conv-draw-use").addEventListener("click", () => { convView.drawn = convView.drawing.pixels(); convUpdate(); });
  await convUpdate();
}
