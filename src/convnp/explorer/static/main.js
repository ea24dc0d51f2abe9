// The page: tabs, the model line, and each panel's start. State (panel, kernel, stack, input, ...) lives in
// the URL's fragment so a view can be shared.
import { api, getState, setState, showError, big, isStatic } from "./util.js";
import { convInit } from "./conv.js";
import { mapsInit, mapsSetModel } from "./maps.js";
import { fieldInit, fieldSetModel, fieldUpdate } from "./field.js";
import { cakeInit } from "./cake.js";
import { liveInit, liveStart } from "./live.js";

const PANELS = ["conv", "maps", "field", "cake", "live"];

function showPanel(name) {
  if (!PANELS.includes(name)) name = "conv";
  for (const panel of PANELS) document.getElementById("panel-" + panel).hidden = panel !== name;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.panel === name);
  setState({ panel: name });
  if (name === "live") liveStart();
  if (name === "field") fieldUpdate();
}

async function setModel(model, state) {
  const line = document.getElementById("model-line");
  if (!model.model) {
    line.textContent = "no model yet: panels 2-3 open the first checkpoint the training writes";
    return;
  }
  line.textContent = `${model.model}${model.source ? " from " + model.source : ""}: ${big(model.totals.params)} parameters, ` +
    `input ${model.input_size.join("×")}, ${model.classes.length} classes` + (isStatic() ? " (static copy)" : "");
  await mapsSetModel(model, state);
  await fieldSetModel(model);
}

async function start() {
  const state = getState();
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showPanel(button.dataset.panel));
  try {
    const [presets, model] = await Promise.all([api("/api/presets"), api("/api/model")]);
    if (!model.live) document.querySelector('#tabs button[data-panel="live"]').hidden = true;
    showPanel(state.panel || (model.live && !model.model ? "live" : "conv"));
    mapsInit();
    fieldInit(state);
    liveInit((opened) => setModel(opened, {}));
    await Promise.all([convInit(presets, state), cakeInit(presets, state), setModel(model, state)]);
    if (state.scale) document.getElementById("scale").value = state.scale;
  } catch (error) {
    showError(document.getElementById("page-error"), error.message);
  }
  document.body.dataset.ready = "true";
}

start();
