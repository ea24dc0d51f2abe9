"""The explorer page in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python).

Each test uses the page as a user would (draws with the mouse, steps the convolution, clicks maps, builds
and breaks a stack) and checks that the numbers it shows are convnp's, that the console stays free of
errors and that no request leaves 127.0.0.1.  Each panel's screenshot goes into pytest's tmp_path, or
into docs/explorer/ (the pictures docs/explorer.md shows) with ``CONVNP_SCREENSHOTS=1``: an ordinary
run leaves the tree clean.

Enable locally with ``pip install playwright`` and ``apt-get install chromium`` (never ``playwright
install``: it downloads a browser).  Where they are missing these tests skip, except in CI (CI=true),
where they fail.
"""
import base64
import json
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

import convnp
from convnp import checkpoint, models, optim
from convnp.explorer import Explorer, TrainingMonitor, decode, start
from convnp.explorer.commands import load_custom_model, load_model_code, train_digits_model
from convnp.explorer.export import export
from convnp.inspect import summary
from convnp.predict import predict_files
from explorer_helpers import MODEL_NAMES, js_fmt, make_model

SHOTS = Path(__file__).resolve().parents[1] / "docs" / "explorer"
HOW = ("pip install playwright (the dev extra has it) and apt-get install chromium; never `playwright install`")


def _unavailable(reason):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason} ({HOW})")
    pytest.skip(f"browser tests skipped: {reason}; to enable them: {HOW}")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _unavailable("no chromium on PATH")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Servers:
    """One explorer server per model, started when first needed.  LeNet-5 is trained for two epochs on the
    bundled digits (a few seconds), so its pictures show a model that has learnt something."""

    def __init__(self, folder):
        self.running, self.folder = {}, folder

    def get(self, name):
        if name not in self.running:
            if name == "lenet5":
                train_digits_model(self.folder, epochs=2, progress=False)
                model, info = checkpoint.load_model(self.folder / "last.npz")
                explorer = Explorer(model, info, source="digits-lenet5/last.npz")
            else:  # through a checkpoint file, loaded the way `convnp explore` loads it
                model, info, samples = make_model(name)
                path = self.folder / f"{name}.npz"
                checkpoint.save(path, model, preprocessing=info["preprocessing"])
                if name == "custom":  # convnp explore CHECKPOINT --model-code explorer_helpers.py:BranchyNet
                    cls = load_model_code(f"{Path(__file__).with_name('explorer_helpers.py')}:BranchyNet")
                    model, info = load_custom_model(cls, path)
                else:
                    model, info = checkpoint.load_model(path)
                explorer = Explorer(model, info, samples=samples)
            self.running[name] = (start(explorer), explorer, model, info)
        return self.running[name]

    def close(self):
        for server, *_ in self.running.values():
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("digits-lenet5"))
    yield s
    s.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
    tab = context.new_page()
    tab.console_errors, tab.outside, tab.allowed_errors = [], [], []
    tab.on("console", lambda message: message.type == "error" and tab.console_errors.append(message.text))
    tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))

    def only_loopback(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "file") or parts.hostname == "127.0.0.1":
            return route.continue_()
        tab.outside.append(url)
        return route.abort()

    context.route("**/*", only_loopback)
    yield tab
    errors = [e for e in tab.console_errors if not any(allowed in e for allowed in tab.allowed_errors)]
    context.close()
    assert errors == [], f"console errors: {errors}"
    assert tab.outside == [], f"requests that left 127.0.0.1: {tab.outside}"


def open_page(tab, server, fragment=""):
    tab.goto(server.url + (f"#{fragment}" if fragment else ""))
    tab.wait_for_selector("body[data-ready=true]")
    settle(tab)


def settle(tab):
    tab.wait_for_function("() => document.body.dataset.pending === '0' || document.body.dataset.pending === undefined")


@pytest.fixture
def shots(tmp_path):
    """Where screenshots go: docs/explorer/ with CONVNP_SCREENSHOTS=1 (to refresh the docs), else tmp_path."""
    return SHOTS if os.environ.get("CONVNP_SCREENSHOTS") == "1" else tmp_path


def shot(tab, name, folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    tab.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert path.stat().st_size < 200_000, f"{path} is {path.stat().st_size:,} bytes"


def centre_of(tab, selector, unit, shape):
    """Page coordinates of unit (row, col) of an h x w map drawn in the element ``selector``."""
    box = tab.locator(selector).bounding_box()
    h, w = shape
    return box["x"] + (unit[1] + 0.5) * box["width"] / w, box["y"] + (unit[0] + 0.5) * box["height"] / h


# --- panel 1 ---------------------------------------------------------------------------------------------------
def test_convolution_panel_steps_and_plays_the_hand_computation(page, servers, shots):
    server, explorer, *_ = servers.get("lenet5")
    open_page(page, server, "panel=conv")
    page.select_option("#conv-input", "line7")
    page.select_option("#conv-kernel", "sobel_x")
    settle(page)
    truth = explorer.conv({"input": "line7", "kernel": "sobel_x", "stride": 1, "padding": 0})
    output, windows = decode(truth["output"], "o"), decode(truth["windows"], "w")
    kernel = decode(truth["kernel"], "k")
    assert page.locator("#conv-output td").count() == 25 and page.locator("#conv-output td.empty").count() == 25
    for _ in range(4):
        page.click("#conv-step")
    # position 3 = (0, 3): the window is on the line's right side: -1*1 + -2*1 + -1*1 = -4, as by hand
    assert page.get_attribute("#conv-sum", "data-value") == "-4" == str(int(output[0, 3]))
    terms = [f"{js_fmt(k)}×{js_fmt(x)}" for k, x in zip(kernel.ravel(), windows[0, 3].ravel())]
    assert page.inner_text("#conv-sum-terms") == " + ".join(terms).replace("+ -", "− ")
    assert page.locator("#conv-image td.window").count() == 9
    assert page.locator("#conv-output td.empty").count() == 21
    shot(page, "convolution", shots)
    page.fill("#conv-speed", "20")
    page.click("#conv-play")
    assert page.inner_text("#conv-play") == "pause"
    page.wait_for_function("() => document.querySelectorAll('#conv-output td.empty').length === 0", timeout=20_000)
    shown = [float(v) for v in page.eval_on_selector_all("#conv-output td", "cells => cells.map(c => c.dataset.value)")]
    assert shown == output.ravel().tolist()
    # stride and padding, the tutorials' patch and bar kernel
    page.select_option("#conv-input", "ticket4")
    page.select_option("#conv-kernel", "horizontal_bar")
    page.fill("#conv-padding", "1")
    page.dispatch_event("#conv-padding", "change")
    page.fill("#conv-stride", "2")
    page.dispatch_event("#conv-stride", "change")
    settle(page)
    request = {"input": "ticket4", "kernel": "horizontal_bar", "stride": 2, "padding": 1}
    truth = decode(explorer.conv(request)["output"], "o")
    assert page.locator("#conv-output tr").count() == truth.shape[0]
    assert page.locator("#conv-image td.pad").count() == 6 * 6 - 16
    assert "stride=2" in page.url and "padding=1" in page.url
    # a drawing: the page sends the canvas, convnp resizes it to 14x14 and convolves it
    page.fill("#conv-padding", "0")
    page.dispatch_event("#conv-padding", "change")
    page.fill("#conv-stride", "1")
    page.dispatch_event("#conv-stride", "change")
    page.select_option("#conv-input", "drawn")
    draw_seven(page, "#conv-draw")
    page.click("#conv-draw-use")
    settle(page)
    page.click("#conv-step")
    pixels = page.evaluate("""() => {
        const c = document.getElementById('conv-draw');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 4 === 0));
    }""")
    canvas = np.array(pixels, dtype=np.uint8).reshape(140, 140)
    drawing = {"dtype": "uint8", "shape": [140, 140], "data": base64.b64encode(canvas.tobytes()).decode()}
    truth = decode(explorer.conv({"input": {"drawing": drawing}, "kernel": "horizontal_bar", "stride": 1,
                                  "padding": 0})["output"], "o")
    assert truth.shape == (12, 12) and page.locator("#conv-output td").count() == 144
    assert float(page.get_attribute("#conv-sum", "data-value")) == float(truth[0, 0])
    assert np.abs(truth).max() > 0  # the drawing reached the server
    # an impossible setting shows convnp's own message
    page.allowed_errors.append("status of 400")
    page.select_option("#conv-input", "ticket4")
    page.select_option("#conv-kernel", "custom")
    page.fill("#conv-custom", "\n".join(["1 1 1 1 1"] * 5))
    page.dispatch_event("#conv-custom", "change")
    settle(page)
    with pytest.raises(ValueError) as truth_error:
        convnp.functional.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.ones((1, 1, 5, 5), np.float32))
    assert page.inner_text("#conv-error") == str(truth_error.value)


# --- panel 2 ---------------------------------------------------------------------------------------------------
def draw_seven(tab, selector):
    box = tab.locator(selector).bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    tab.mouse.move(x + 0.25 * w, y + 0.2 * h)
    tab.mouse.down()
    for t in np.linspace(0, 1, 8):
        tab.mouse.move(x + (0.25 + 0.5 * t) * w, y + 0.2 * h)
    for t in np.linspace(0, 1, 12):
        tab.mouse.move(x + (0.75 - 0.3 * t) * w, y + (0.2 + 0.65 * t) * h)
    tab.mouse.up()


def test_feature_maps_of_a_drawn_digit_hover_and_click(page, servers, tmp_path, shots):
    server, explorer, model, info = servers.get("lenet5")
    open_page(page, server, "panel=maps")
    draw_seven(page, "#draw-canvas")
    settle(page)
    # the drawing as a picture file: convnp predict on it gives the classes and probabilities shown
    data_url = page.evaluate("() => document.getElementById('draw-canvas').toDataURL('image/png')")
    (tmp_path / "drawn.png").write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
    (_, expected), = predict_files(model, info, [tmp_path / "drawn.png"], top=5)
    shown = page.eval_on_selector_all("#top-k li",
                                      "items => items.map(i => [i.dataset.class, Number(i.dataset.probability)])")
    assert [name for name, _ in shown] == [name for name, _ in expected]
    np.testing.assert_allclose([p for _, p in shown], [p for _, p in expected], rtol=1e-5, atol=1e-7)
    assert page.locator("#layers .layer").count() == 12
    assert page.locator("#layer-0 canvas").count() == 6 and page.locator("#layer-3 canvas").count() == 16
    shot(page, "feature-maps", shots)

    # a test image: hover reads convnp's value, click shows the filter, the window and the field
    page.select_option("#sample-select", "1")
    settle(page)
    reply = explorer.forward({"sample": 1})
    conv1 = decode(reply["layers"][0]["output"], "o")
    page.mouse.move(*centre_of(page, '#layer-0 canvas[data-channel="2"]', (5, 7), (24, 24)))
    assert float(page.get_attribute("#hover-info", "data-value")) == float(conv1[2, 5, 7])
    page.mouse.click(*centre_of(page, '#layer-0 canvas[data-channel="2"]', (5, 7), (24, 24)))
    page.wait_for_selector("#window-table")
    settle(page)
    x = decode(reply["input"], "x")
    window = [float(v) for v in page.eval_on_selector_all("#window-table td", "c => c.map(td => td.dataset.value)")]
    assert window == x[0, 5:10, 7:12].ravel().tolist()
    assert page.locator("#filter-slices canvas").count() == 1
    assert json.loads(page.get_attribute("#field-text", "data-box")) == [5, 7, 9, 11]
    # conv2 reads the pooled maps: six input-channel slices; its 14x14 field, jump 2
    page.mouse.click(*centre_of(page, '#layer-3 canvas[data-channel="4"]', (2, 3), (8, 8)))
    page.wait_for_function("() => document.querySelectorAll('#filter-slices canvas').length === 6")
    settle(page)
    pooled = decode(reply["layers"][2]["output"], "p")
    assert page.locator("#windows table").count() == 6  # one window per input channel
    for c in range(6):
        table = "#window-table" if c == 0 else f"#window-table-{c}"
        window = [float(v) for v in page.eval_on_selector_all(f"{table} td", "c => c.map(td => td.dataset.value)")]
        assert window == pooled[c, 2:7, 3:8].ravel().tolist()
    shown_box = json.loads(page.get_attribute("#field-text", "data-box"))
    assert shown_box == explorer.field({"layer": 3, "unit": [2, 3]})["box"]
    page.select_option("#scale", "global")
    page.select_option("#scale", "layer")
    assert "scale=layer" in page.url and "sample=1" in page.url


# --- panel 3 -------------------------------------------------------------------------------------------------------
def test_receptive_field_race_on_lenet5(page, servers, shots):
    server, explorer, *_ = servers.get("lenet5")
    open_page(page, server, "panel=field&patch=4")
    sizes = []
    for step in range(7):
        if step:
            page.click("#rf-next")
            settle(page)
        sizes.append(page.get_attribute("#rf-cnn-text", "data-size"))
        if step == 3:
            shot(page, "receptive-field", shots)
    assert sizes == ["5x5", "5x5", "6x6", "14x14", "14x14", "16x16", "16x16"]  # LeNet-5's true fields
    assert page.get_attribute("#rf-vit-text", "data-size") == "global"
    page.click("#rf-next")
    settle(page)
    assert page.get_attribute("#rf-cnn-text", "data-size") == "global"  # fc1
    for _ in range(8):
        page.click("#rf-prev")
    settle(page)
    assert page.get_attribute("#rf-vit-text", "data-size") == "4x4"
    page.select_option("#vit-patch", "7")
    settle(page)
    assert page.get_attribute("#rf-vit-text", "data-size") == "7x7"
    page.click("#rf-next")  # relu after conv1: click a unit of its map
    settle(page)
    page.mouse.click(*centre_of(page, "#rf-map", (20, 3), (24, 24)))
    settle(page)
    box = explorer.field({"layer": 1, "unit": [20, 3]})["box"]
    assert f"rows {box[0]}-{box[2]}, columns {box[1]}-{box[3]}" in page.inner_text("#rf-cnn-text")


# --- every panel on each of the five models ----------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_panel_works_on_each_model(page, servers, name):
    server, explorer, model, info = servers.get(name)
    open_page(page, server, "panel=maps")
    reply = explorer.forward({"sample": 0})
    assert page.locator("#layers .layer").count() == len(reply["layers"])
    top = page.eval_on_selector_all("#top-k li", "items => items.map(i => i.dataset.class)")
    assert top == [t["class"] for t in reply["top"]]
    first_conv = next(layer for layer in reply["layers"] if layer["has_filter"])
    c, h, w = first_conv["shape"]
    unit = (h // 2, w // 3)
    page.mouse.move(*centre_of(page, f'#layer-{first_conv["index"]} canvas[data-channel="{c - 1}"]', unit, (h, w)))
    value = decode(first_conv["output"], "o")[c - 1, unit[0], unit[1]]
    assert float(page.get_attribute("#hover-info", "data-value")) == float(value)
    page.mouse.click(*centre_of(page, f'#layer-{first_conv["index"]} canvas[data-channel="{c - 1}"]', unit, (h, w)))
    page.wait_for_selector("#window-table")
    settle(page)
    assert page.locator("#filter-slices canvas").count() == info["preprocessing"]["input_size"][0]
    assert json.loads(page.get_attribute("#field-text", "data-box")) == \
        explorer.field({"layer": first_conv["index"], "unit": list(unit)})["box"]
    # panel 3: every layer's field as convnp.summary gives it
    page.click('#tabs button[data-panel="field"]')
    settle(page)
    leaves = [r for r in summary(model, tuple(info["preprocessing"]["input_size"])).rows if r.is_leaf]
    for step, row in enumerate(leaves):
        if step:
            page.click("#rf-next")
            settle(page)
        expected = "global" if row.rf_global else f"{row.rf_size[0]}x{row.rf_size[1]}"
        assert page.get_attribute("#rf-cnn-text", "data-size") == expected, (step, row.label)
    # panel 1 on the model's own test image
    page.click('#tabs button[data-panel="conv"]')
    page.select_option("#conv-input", "digit")
    settle(page)
    page.click("#conv-step")
    truth = decode(explorer.conv({"input": "digit", "kernel": page.input_value("#conv-kernel"), "stride": 1,
                                  "padding": 0})["output"], "o")
    assert float(page.get_attribute("#conv-sum", "data-value")) == float(truth[0, 0])


# --- panel 4 -------------------------------------------------------------------------------------------------------
def cake_rows(tab):
    return tab.eval_on_selector_all("#cake-table tr[data-block]", """rows => rows.map(r => [
        r.querySelector('.shape').textContent, r.querySelector('.params').textContent,
        r.querySelector('.macs').textContent, r.querySelector('.rf').textContent])""")


def page_stack(tab):
    """The stack the page keeps in its URL."""
    return json.loads(tab.evaluate("() => new URLSearchParams(location.hash.slice(1)).get('stack')"))


def test_cake_builder_builds_breaks_and_copies_a_stack(page, servers, shots):
    server, explorer, *_ = servers.get("lenet5")
    open_page(page, server, "panel=cake")
    s = summary(models.LeNet5(), (1, 28, 28))
    rows = cake_rows(page)
    # LeNet5 calls its ReLU and pool modules several times: one summary row per call, one block per call
    expected = [["×".join(map(str, r.output_shape[1:])), f"{r.num_params:,}" if not r.recursive else "0",
                 f"{r.macs:,}", "global" if r.rf_global else f"{r.rf_size[0]}×{r.rf_size[1]}"] for r in s.leaf_rows()]
    assert rows == expected
    assert page.inner_text("#cake-totals .params") == f"{s.total_params:,}" == "44,426"
    assert page.inner_text("#cake-totals .macs") == f"{s.total_mult_adds:,}"
    shot(page, "cake-builder", shots)
    # break it: conv2 with a 13x13 kernel on 12x12 maps
    kernel = page.locator('#cake-table tr[data-block="3"] input[data-key="kernel"]')
    kernel.fill("13")
    kernel.dispatch_event("change")
    settle(page)
    assert page.get_attribute("#cake-table tr.failed", "data-block") == "3"
    truth = explorer.stack(page_stack(page))
    assert truth["block"] == 3 and page.inner_text("#cake-error") == f"block 4: {truth['error']}"
    assert "13x13" in truth["error"] and "12x12" in truth["error"]
    kernel = page.locator('#cake-table tr[data-block="3"] input[data-key="kernel"]')
    kernel.fill("3")
    kernel.dispatch_event("change")
    settle(page)
    assert page.locator("#cake-table tr.failed").count() == 0
    # reorder, remove, add: every time the table is convnp.summary of the stack
    page.click('#cake-table tr[data-block="2"] button.up')   # the pool before the ReLU
    settle(page)
    page.click('#cake-table tr[data-block="11"] button.remove')
    settle(page)
    page.select_option("#cake-add-type", "linear")
    page.click("#cake-add")
    settle(page)
    stack = page_stack(page)
    assert [b["type"] for b in stack["blocks"]][:4] == ["conv", "maxpool", "relu", "conv"]
    assert len(stack["blocks"]) == 12 and stack["blocks"][-1] == {"type": "linear", "out_features": 10}
    truth = explorer.stack(stack)
    assert cake_rows(page) == [
        ["×".join(map(str, r["output_shape"][1:])), f"{r['params']:,}", f"{r['macs']:,}",
         "global" if r["rf_global"] else "×".join(map(str, r["rf_size"]))] for r in truth["rows"]]
    assert page.inner_text("#cake-totals .params") == f"{truth['totals']['params']:,}"
    page.click("#cake-copy")
    assert page.inner_text("#cake-code") == truth["code"]
    # the stack lives in the URL: a reload shows the same table
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    settle(page)
    assert page.inner_text("#cake-totals .params") == f"{truth['totals']['params']:,}"
    page.select_option("#cake-preset", "smallvgg")
    settle(page)
    assert page.inner_text("#cake-totals .params") == f"{summary(models.SmallVGG(), (3, 32, 32)).total_params:,}"


# --- panel 5 ---------------------------------------------------------------------------------------------------------
def test_live_training_view_and_opening_its_checkpoint(page, tmp_path, shots):
    from convnp.data import DataLoader
    from convnp.train import Callback, ModelCheckpoint, fit

    class Slow(Callback):  # a few seconds of training, so the page sees it run
        def on_batch_end(self, state):
            time.sleep(0.08)

    convnp.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.random((96, 1, 8, 8), dtype=np.float32), rng.integers(0, 3, 96)
    prep = {"dataset": None, "mean": [0.0], "std": [1.0], "input_size": [1, 8, 8], "classes": ["h", "v", "d"]}
    model = models.TinyCNN()
    monitor = TrainingMonitor(checkpoint_dir=tmp_path, interval=0.2)
    server = start(Explorer(live=monitor))
    callbacks = [monitor, Slow(), ModelCheckpoint(tmp_path, preprocessing=prep)]
    worker = threading.Thread(target=fit, args=(model, DataLoader((x, y), 16, shuffle=True, seed=0),
                                                DataLoader((x, y), 48), optim.Adam(model.parameters(), 1e-2)),
                              kwargs=dict(epochs=3, callbacks=callbacks, progress=False, log=None))
    try:
        open_page(page, server)
        worker.start()
        assert page.locator("#panel-live").is_visible()
        page.wait_for_function("() => document.getElementById('live-status').textContent.startsWith('training:')",
                               timeout=20_000)
        page.wait_for_function(
            "() => document.getElementById('live-status').textContent.startsWith('training finished')", timeout=60_000)
        worker.join()
        snap = monitor.snapshot()
        assert page.locator("#live-layers tr[data-layer]").count() == len(snap["layers"]) == 2
        for layer in snap["layers"]:
            text = page.inner_text(f'#live-layers tr[data-layer="{layer["name"]}"] .weight-stats')
            w = layer["weight"]
            assert text == f"{js_fmt(w['min'])} / {js_fmt(w['mean'])} / {js_fmt(w['max'])}"
        assert "images/s" in page.inner_text("#live-status")
        shot(page, "live-training", shots)
        page.click("#live-open")
        page.wait_for_function("() => document.getElementById('model-line').textContent.startsWith('TinyCNN')")
        settle(page)
        assert str(tmp_path / "last.npz") in page.inner_text("#model-line")
        page.click('#tabs button[data-panel="maps"]')
        # the opened checkpoint has no test images on disk; the drawing works
        draw_seven(page, "#draw-canvas")
        settle(page)
        assert page.locator("#top-k li").count() == 3 and page.locator("#layers .layer").count() == 5
    finally:
        server.shutdown()
        server.server_close()


# --- the static copy -------------------------------------------------------------------------------------------------
def test_the_exported_copy_opens_from_disk_without_a_server(page, tmp_path):
    model, info, samples = make_model("lenet5")
    explorer = Explorer(model, info, samples=samples)
    path = export(explorer, tmp_path / "site")
    page.goto(path.as_uri() + "#panel=maps")
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("#model-line").endswith("(static copy)")
    top = page.eval_on_selector_all("#top-k li", "items => items.map(i => Number(i.dataset.probability))")
    assert top == [t["probability"] for t in explorer.forward({"sample": 0})["top"]]
    page.mouse.click(*centre_of(page, '#layer-3 canvas[data-channel="0"]', (1, 6), (8, 8)))
    page.wait_for_selector("#window-table")
    shown_box = json.loads(page.get_attribute("#field-text", "data-box"))
    assert shown_box == explorer.field({"layer": 3, "unit": [1, 6]})["box"]
    page.click('#tabs button[data-panel="conv"]')
    page.click("#conv-step")
    first = decode(explorer.conv({"input": "edge8", "kernel": "sobel_x", "stride": 1, "padding": 0})["output"], "o")
    assert page.get_attribute("#conv-sum", "data-value") == str(float(first[0, 0])).removesuffix(".0")
    page.click('#tabs button[data-panel="cake"]')
    assert page.inner_text("#cake-totals .params") == "44,426"
