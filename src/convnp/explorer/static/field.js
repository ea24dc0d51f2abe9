// Panel 3: the receptive-field race, CNN against ViT. Step through the model's layers: the field of the
// centre unit grows on the input (sizes and jumps from convnp.summary, via POST /api/race and /api/field);
// beside it a ViT with patch size p: p x p after the patch embedding, the whole image after attention.
import { api, el, showError, paint, range, unitAt, setState, paintInput, outline } from "./util.js";
import { forwardView } from "./maps.js";

const fieldView = { race: null, step: 0, unit: null, asked: 0 };

function fieldText(size, isGlobal) {
  return isGlobal ? "the whole image" : `${size[0]}×${size[1]} pixels`;
}

export function fieldSetModel(model) {  // patch sizes that fit the model's input
  const select = document.getElementById("vit-patch");
  const side = Math.min(model.input_size[1], model.input_size[2]);
  select.replaceChildren(...[2, 4, 7, 8, 14, 16].filter((p) => p <= side).map((p) => el("option", { value: p, text: p })));
  select.value = fieldView.wantedPatch;
  if (!select.value) select.value = select.options[Math.min(1, select.options.length - 1)].value;
  fieldView.step = Math.min(fieldView.step, model.rows.filter((r) => r.is_leaf).length - 1);
  return fieldUpdate();
}

export async function fieldUpdate() {
  const errorNode = document.getElementById("page-error");
  if (!forwardView.model) return;
  try {
    const patch = Number(document.getElementById("vit-patch").value);
    const race = await api("/api/race", { patch });
    if (Number(document.getElementById("vit-patch").value) !== patch) return;
    fieldView.race = race;
    fieldView.step = Math.min(fieldView.step, fieldView.race.cnn.length - 1);
    await fieldRender();
  } catch (error) {
    showError(errorNode, error.message);
  }
}

async function fieldRender() {
  const race = fieldView.race;
  if (!race || !forwardView.input) return;
  const step = fieldView.step;
  const layer = race.cnn[step];
  setState({ rfstep: step, patch: race.patch });
  const table = document.getElementById("rf-table");
  table.replaceChildren(el("tr", {}, el("th", { text: "layer" }), el("th", { text: "output" }),
    el("th", { text: "receptive field" }), el("th", { text: "jump" })));
  race.cnn.forEach((row, i) => {
    table.append(el("tr", { class: i === step ? "current" : "", "data-step": i },
      el("td", { text: `${i}. ${row.name} (${row.type})` }), el("td", { text: row.output_shape.join("×") }),
      el("td", { class: "rf-size", text: row.rf_global ? "global" : row.rf_size ? row.rf_size.join("×") : "—" }),
      el("td", { text: row.rf_jump ? row.rf_jump.join("×") : "—" })));
  });
  // the centre unit of this layer's map (or the unit clicked on the map)
  const shape = layer.output_shape;
  const spatial = shape.length === 3;
  const unit = fieldView.unit && spatial ? fieldView.unit : spatial ? [Math.floor(shape[1] / 2), Math.floor(shape[2] / 2)] : [0, 0];
  const asked = ++fieldView.asked;  // a newer step or click wins
  const field = await api("/api/field", { layer: step, unit });
  if (asked !== fieldView.asked) return;
  const cnn = document.getElementById("rf-cnn");
  paintInput(cnn, forwardView.input);
  outline(cnn, field.box);
  document.getElementById("rf-cnn-caption").textContent = `CNN: after ${layer.name} (${layer.type})`;
  const text = document.getElementById("rf-cnn-text");
  text.textContent = `unit (${unit[0]}, ${unit[1]}) sees ${fieldText(field.size, field.global)}` +
    (field.global ? "" : `: rows ${field.box[0]}-${field.box[2]}, columns ${field.box[1]}-${field.box[3]}`);
  text.dataset.size = field.global ? "global" : field.size.join("x");
  document.getElementById("rf-unit-text").textContent = spatial ? `unit (${unit[0]}, ${unit[1]})` : "not a map: every unit sees the whole input";
  // the layer's first map, clickable
  const map = document.getElementById("rf-map");
  const data = forwardView.layers[step] && forwardView.layers[step].array;
  if (data && spatial) {
    const [, h, w] = shape;
    const [lo, hi] = range(data.data, 0, h * w);
    paint(map, data.data, 0, h, w, lo, hi);
    map.getContext("2d").fillStyle = "rgba(255,122,0,0.8)";
    map.getContext("2d").fillRect(unit[1], unit[0], 1, 1);
  } else {
    map.width = 1; map.height = 1;
  }
  // the ViT beside it: step 0 is the patch embedding, every later step is after an attention block
  const vitStep = race.vit[Math.min(step, 1)];
  const vit = document.getElementById("rf-vit");
  paintInput(vit, forwardView.input);
  const [, hImage, wImage] = race.input_size;
  if (vitStep.rf_global) outline(vit, [0, 0, hImage - 1, wImage - 1]);
  else {
    const p = race.patch;
    const pr = Math.min(Math.floor(Math.floor(hImage / 2) / p), Math.floor(hImage / p) - 1) * p;
    const pc = Math.min(Math.floor(Math.floor(wImage / 2) / p), Math.floor(wImage / p) - 1) * p;
    outline(vit, [pr, pc, pr + vitStep.rf_size[0] - 1, pc + vitStep.rf_size[1] - 1]);
  }
  document.getElementById("rf-vit-caption").textContent = `ViT (patch ${race.patch}): ${step === 0 ? "after the patch embedding" : "after attention block 1"}`;
  const vitText = document.getElementById("rf-vit-text");
  vitText.textContent = `${vitStep.name}: a token sees ${fieldText(vitStep.rf_size, vitStep.rf_global)}`;
  vitText.dataset.size = vitStep.rf_global ? "global" : vitStep.rf_size.join("x");
}

export function fieldInit(state) {
  fieldView.wantedPatch = state.patch || "4";
  const select = document.getElementById("vit-patch");
  fieldView.step = Number(state.rfstep || 0);
  select.addEventListener("change", fieldUpdate);
  document.getElementById("rf-prev").addEventListener("click", () => { fieldView.step = Math.max(0, fieldView.step - 1); fieldView.unit = null; fieldRender(); });
  document.getElementById("rf-next").addEventListener("click", () => {
    if (fieldView.race) fieldView.step = Math.min(fieldView.race.cnn.length - 1, fieldView.step + 1);
    fieldView.unit = null;
    fieldRender();
  });
  document.getElementById("rf-map").addEventListener("click", (event) => {
    const shape = fieldView.race && fieldView.race.cnn[fieldView.step].output_shape;
    if (!shape || shape.length !== 3) return;
    fieldView.unit = unitAt(event, event.target, shape[1], shape[2]);
    fieldRender();
  });
  forwardView.listeners.push(() => { if (fieldView.race) fieldRender(); });
}
