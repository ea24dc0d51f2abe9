// Panel 4: the cake builder. Add, remove and reorder blocks; POST /api/stack builds the nn.Sequential with
// convnp and returns convnp.summary's rows (output shape, parameters, MACs, FLOPs, receptive field) and
// totals, or convnp's error and the block it names.
import { api, el, big, setState, pending } from "./util.js";

const cakeView = { blocks: [], presets: {}, timer: null, reply: null, asked: 0 };
const FIELDS = {  // the settings each block type shows (blank: convnp's default / inferred from the input)
  conv: [["out_channels", "channels", 8], ["kernel", "kernel", 3], ["stride", "stride", 1], ["padding", "padding", 0]],
  maxpool: [["kernel", "kernel", 2], ["stride", "stride", ""], ["padding", "padding", 0]],
  avgpool: [["kernel", "kernel", 2], ["stride", "stride", ""], ["padding", "padding", 0]],
  linear: [["out_features", "features", 10]],
};
const NAMES = { conv: "Conv2d", maxpool: "MaxPool2d", avgpool: "AvgPool2d", gap: "global avg pool", batchnorm: "BatchNorm",
  relu: "ReLU", flatten: "Flatten", linear: "Linear", dropout: "Dropout" };

function cakeSchedule() {
  if (cakeView.timer) clearTimeout(cakeView.timer); else pending(1);
  cakeView.timer = setTimeout(() => { cakeView.timer = null; cakeUpdate().finally(() => pending(-1)); }, 120);
}

function inputShape() {
  return ["cake-c", "cake-h", "cake-w"].map((id) => Number(document.getElementById(id).value));
}

export async function cakeUpdate() {
  const request = { input_shape: inputShape(), blocks: cakeView.blocks };
  setState({ stack: JSON.stringify(request) });
  const errorNode = document.getElementById("cake-error");
  let reply;
  const asked = ++cakeView.asked;  // only the latest request's answer is shown
  try {
    reply = await api("/api/stack", request);
  } catch (error) {
    reply = { error: error.message, block: null, rows: [] };
  }
  if (asked !== cakeView.asked) return;
  cakeView.reply = reply;
  errorNode.hidden = !reply.error;
  errorNode.textContent = reply.error ? (reply.block === null ? reply.error : `block ${reply.block + 1}: ${reply.error}`) : "";
  cakeRender();
}

function cakeRender() {
  const reply = cakeView.reply || { rows: [] };
  const table = document.getElementById("cake-table");
  table.replaceChildren(el("tr", {}, ...["#", "block", "settings", "", "output shape", "parameters", "mult-adds", "FLOPs", "RF size", "RF jump"]
    .map((text) => el("th", { text }))));
  cakeView.blocks.forEach((block, i) => {
    const row = reply.rows[i];
    const failed = reply.block === i;
    const settings = el("td", { class: "settings" });
    for (const [key, label, fallback] of FIELDS[block.type] || []) {
      const input = el("input", { type: "number", min: key === "padding" ? 0 : 1, title: label, placeholder: label, "data-key": key,
        value: block[key] === undefined ? fallback : block[key] });
      input.addEventListener("change", () => {
        if (input.value === "") delete block[key]; else block[key] = Number(input.value);
        cakeSchedule();
      });
      settings.append(el("label", { text: label + " " }, input), " ");
    }
    const buttons = el("td", {},
      el("button", { class: "up", title: "move up", text: "↑", onclick: () => move(i, -1) }),
      el("button", { class: "down", title: "move down", text: "↓", onclick: () => move(i, 1) }),
      el("button", { class: "remove", title: "remove", text: "✕", onclick: () => { cakeView.blocks.splice(i, 1); cakeSchedule(); cakeRender(); } }));
    const cells = row ? [row.output_shape.slice(1).join("×"), big(row.params), big(row.macs), big(row.flops),
      row.rf_global ? "global" : row.rf_size ? row.rf_size.join("×") : "—", row.rf_jump ? row.rf_jump.join("×") : "—"]
      : [failed ? reply.error : "", "", "", "", "", ""];
    const tr = el("tr", { class: failed ? "failed" : "", "data-block": i },
      el("td", { text: i + 1 }), el("td", { class: "type", text: NAMES[block.type] }), settings, buttons);
    cells.forEach((text, k) => tr.append(el("td", { class: ["shape", "params", "macs", "flops", "rf", "jump"][k], text })));
    table.append(tr);
  });
  if (reply.totals) {
    table.append(el("tr", { id: "cake-totals" }, el("td", { text: "" }), el("td", { text: "total" }), el("td"), el("td"),
      el("td", { text: "" }), el("td", { class: "params", text: big(reply.totals.params) }),
      el("td", { class: "macs", text: big(reply.totals.macs) }), el("td", { class: "flops", text: big(reply.totals.flops) }),
      el("td"), el("td")));
  }
}

function move(i, delta) {
  const j = i + delta;
  if (j < 0 || j >= cakeView.blocks.length) return;
  [cakeView.blocks[i], cakeView.blocks[j]] = [cakeView.blocks[j], cakeView.blocks[i]];
  cakeRender();
  cakeSchedule();
}

function loadPreset(key) {
  const preset = cakeView.presets[key];
  if (!preset) return;
  cakeView.blocks = preset.blocks.map((block) => ({ ...block }));
  ["cake-c", "cake-h", "cake-w"].forEach((id, k) => { document.getElementById(id).value = preset.input_shape[k]; });
  return cakeUpdate();
}

export async function cakeInit(presets, state) {
  cakeView.presets = presets.stacks;
  const select = document.getElementById("cake-preset");
  for (const [key, preset] of Object.entries(presets.stacks)) select.append(el("option", { value: key, text: preset.label }));
  select.addEventListener("change", () => loadPreset(select.value));
  const add = document.getElementById("cake-add-type");
  for (const type of presets.block_types) add.append(el("option", { value: type, text: NAMES[type] }));
  document.getElementById("cake-add").addEventListener("click", () => {
    const block = { type: add.value };
    for (const [key, , fallback] of FIELDS[add.value] || []) if (fallback !== "") block[key] = fallback;
    cakeView.blocks.push(block);
    cakeRender();
    cakeSchedule();
  });
  for (const id of ["cake-c", "cake-h", "cake-w"]) document.getElementById(id).addEventListener("change", cakeSchedule);
  document.getElementById("cake-copy").addEventListener("click", async () => {
    const code = document.getElementById("cake-code");
    code.hidden = false;
    code.textContent = (cakeView.reply && cakeView.reply.code) || "";
    try { await navigator.clipboard.writeText(code.textContent); } catch (error) { /* the text is shown anyway */ }
  });
  let saved = null;
  try { saved = state.stack ? JSON.parse(state.stack) : null; } catch (error) { saved = null; }
  if (saved && Array.isArray(saved.blocks) && Array.isArray(saved.input_shape)) {
    cakeView.blocks = saved.blocks;
    ["cake-c", "cake-h", "cake-w"].forEach((id, k) => { document.getElementById(id).value = saved.input_shape[k]; });
    await cakeUpdate();
  } else {
    select.value = "lenet5";
    await loadPreset("lenet5");
  }
}
