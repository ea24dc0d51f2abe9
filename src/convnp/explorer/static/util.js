// Shared helpers: the JSON API, convnp's arrays, number formatting, drawing, the state kept in the URL.
// The page never computes a model number: it decodes convnp's float32 arrays and draws them.

// In a static copy (convnp explore --export) the replies were computed in advance.
const STATIC_REPLIES = window.CONVNP_STATIC || null;

// How many answers the page is still waiting for (document.body.dataset.pending; tests wait for "0").
export function pending(delta) {
  const count = Number(document.body.dataset.pending || 0) + delta;
  document.body.dataset.pending = String(count);
}

export async function api(path, body) {
  pending(1);
  try { return await ask(path, body); } finally { pending(-1); }
}

async function ask(path, body) {
  const key = body === undefined ? "GET " + path : "POST " + path + " " + JSON.stringify(body);
  if (STATIC_REPLIES) {
    if (key in STATIC_REPLIES) return structuredClone(STATIC_REPLIES[key]);
    throw new Error("this static copy holds no answer for that choice: run `convnp explore` for live answers");
  }
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const reply = await response.json();
  if (!response.ok) throw new Error(reply.error || response.statusText);
  return reply;
}

export function isStatic() { return STATIC_REPLIES !== null; }

// {dtype, shape, data: base64 little-endian} -> {shape, data: Float32Array} (convnp's values, bit for bit)
export function decodeArray(encoded) {
  if (!encoded) return null;
  const bytes = Uint8Array.from(atob(encoded.data), (c) => c.charCodeAt(0));
  return { shape: encoded.shape, data: new Float32Array(bytes.buffer) };
}

export function encodeBytes(shape, bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  return { dtype: "uint8", shape, data: btoa(text) };
}

// A number as the page writes it: 4 significant digits, no trailing zeros.
export function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (Number.isInteger(value)) return String(value);
  const text = Number(value.toPrecision(4)).toString();
  return text === "-0" ? "0" : text;
}

export function big(n) { return n.toLocaleString("en-US"); }

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function showError(node, message) {
  node.hidden = !message;
  node.textContent = message || "";
}

// Colour of a value between lo and hi: diverging blue-white-red around 0 when the range holds both signs,
// else dark-to-bright.
export function colour(value, lo, hi) {
  if (lo < 0 && hi > 0) {
    const t = value < 0 ? Math.min(1, value / lo) : Math.min(1, value / hi);
    const c = Math.round(255 * (1 - t));
    return value < 0 ? [c, c, 255] : [255, c, c];
  }
  const t = hi > lo ? Math.max(0, Math.min(1, (value - lo) / (hi - lo))) : 0;
  const [a, b, u] = t < 0.5 ? [[40, 20, 80], [30, 140, 140], t * 2] : [[30, 140, 140], [250, 230, 40], t * 2 - 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * u));
}

export function range(data, start = 0, end = data.length) {
  let lo = Infinity, hi = -Infinity;
  for (let i = start; i < end; i++) { if (data[i] < lo) lo = data[i]; if (data[i] > hi) hi = data[i]; }
  return [lo, hi];
}

// Paint an h x w block of `data` (from `offset`) into a canvas of that size.
export function paint(canvas, data, offset, h, w, lo, hi, grey = false) {
  canvas.width = w; canvas.height = h;
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = data[offset + i];
    let rgb;
    if (grey) { const g = Math.round(255 * Math.max(0, Math.min(1, hi > lo ? (v - lo) / (hi - lo) : 0))); rgb = [g, g, g]; }
    else rgb = colour(v, lo, hi);
    image.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

// The unit (row, col) of an h x w map under a mouse event on its (scaled) canvas.
export function unitAt(event, canvas, h, w) {
  const box = canvas.getBoundingClientRect();
  const row = Math.min(h - 1, Math.max(0, Math.floor((event.clientY - box.top) / box.height * h)));
  const col = Math.min(w - 1, Math.max(0, Math.floor((event.clientX - box.left) / box.width * w)));
  return [row, col];
}

// --- the page state in the URL (#panel=conv&kernel=sobel_x&...) so a view can be shared ---------------------
export function getState() {
  return Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
}

export function setState(changes) {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") params.delete(key); else params.set(key, value);
  }
  history.replaceState(null, "", "#" + params.toString());
}

// --- a canvas to draw on with the mouse (white ink on black) -------------------------------------------------
export function drawingCanvas(canvas, onStroke, onEnd, width = 18) {
  const context = canvas.getContext("2d");
  const clear = () => { context.fillStyle = "#000"; context.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let last = null;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    context.fillStyle = "#fff";
    context.beginPath(); context.arc(last[0], last[1], width / 2, 0, 2 * Math.PI); context.fill();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const p = point(event);
    context.strokeStyle = "#fff"; context.lineWidth = width; context.lineCap = "round";
    context.beginPath(); context.moveTo(last[0], last[1]); context.lineTo(p[0], p[1]); context.stroke();
    last = p;
    if (onStroke) onStroke();
  });
  const end = () => { if (last) { last = null; if (onEnd) onEnd(); } };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  return {
    clear,
    pixels() {  // the canvas as grey uint8 (H, W)
      const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
      const grey = new Uint8Array(canvas.width * canvas.height);
      for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i];
      return encodeBytes([canvas.height, canvas.width], grey);
    },
    isEmpty() {
      const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < rgba.length; i += 4) if (rgba[i] > 0) return false;
      return true;
    },
  };
}

// Draw the model input (C, H, W) as a picture: grey for one channel, RGB for three.
export function paintInput(canvas, array) {
  const [c, h, w] = array.shape;
  if (c === 3) {
    canvas.width = w; canvas.height = h;
    const context = canvas.getContext("2d");
    const image = context.createImageData(w, h);
    const [lo, hi] = range(array.data);
    for (let i = 0; i < h * w; i++) {
      for (let k = 0; k < 3; k++) image.data[4 * i + k] = Math.round(255 * (array.data[k * h * w + i] - lo) / ((hi - lo) || 1));
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  } else {
    const [lo, hi] = range(array.data, 0, h * w);
    paint(canvas, array.data, 0, h, w, lo, hi, true);
  }
}

// An outline of input pixels [top, left, bottom, right] (inclusive) over a canvas drawn at 1 px per pixel.
export function outline(canvas, box, colourName = "#ff7a00") {
  const context = canvas.getContext("2d");
  context.save();
  context.fillStyle = "rgba(255, 122, 0, 0.28)";
  context.fillRect(box[1], box[0], box[3] - box[1] + 1, box[2] - box[0] + 1);
  context.strokeStyle = colourName; context.lineWidth = Math.max(0.5, canvas.width / 120);
  context.strokeRect(box[1] + 0.25, box[0] + 0.25, box[3] - box[1] + 0.5, box[2] - box[0] + 0.5);
  context.restore();
}
