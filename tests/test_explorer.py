"""convnp.explorer without a browser: the Explorer class against convnp's own forward / conv2d / summary
and independent truths (hand values, naive loops, gradients), the HTTP layer, the training monitor, the CLI."""
import base64
import json
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import convnp
from convnp import checkpoint, functional as F, models, nn, reference
from convnp.errors import UserError
from convnp.explorer import Explorer, RequestError, TrainingMonitor, decode, encode, start
from convnp.explorer.commands import load_custom_model, load_model_code
from convnp.inspect import summary, trace
from convnp.predict import preprocess
from convnp.tensor import Tensor, no_grad
from explorer_helpers import MODEL_NAMES, make_model


def arr(encoded):
    return decode(encoded, "test")


@pytest.fixture(scope="module", params=MODEL_NAMES)
def explored(request):
    model, info, samples = make_model(request.param)
    return request.param, model, info, samples, Explorer(model, info, samples=samples)


# --- arrays ------------------------------------------------------------------------------------------------
def test_arrays_travel_as_little_endian_float32_bit_for_bit():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    encoded = encode(x)
    assert encoded["shape"] == [3, 4, 5] and encoded["dtype"] == "float32"
    raw = base64.b64decode(encoded["data"])
    assert raw == x.astype("<f4").tobytes()
    assert np.array_equal(decode(encoded, "x"), x)
    assert np.array_equal(decode(json.loads(json.dumps(encoded)), "x"), x)


@pytest.mark.parametrize("value, message", [
    ({"dtype": "float64", "shape": [1], "data": ""}, "dtype must be one of"),
    ({"dtype": "float32", "shape": [2], "data": "AAAA"}, "needs 8 bytes"),
    ({"dtype": "float32", "shape": [-1], "data": ""}, "positive integers"),
    ({"dtype": "float32", "shape": [1], "data": "!!"}, "not valid base64"),
    ([[1, 2], [3]], "rectangular"),
    ("text", "expected an array"),
])
def test_malformed_arrays_are_refused_with_their_name(value, message):
    with pytest.raises(RequestError, match=message):
        decode(value, "kernel")


# --- panel 2: forward ------------------------------------------------------------------------------------------
def test_forward_gives_convnps_own_outputs_exactly(explored):
    name, model, info, (x, y), ex = explored
    reply = json.loads(json.dumps(ex.forward({"sample": 1})))  # what travels over HTTP
    prep = info["preprocessing"]
    expected_input = ((x[1] - np.array(prep["mean"], np.float32)[:, None, None])
                      / np.array(prep["std"], np.float32)[:, None, None])
    assert np.array_equal(arr(reply["input"]), expected_input)
    with no_grad():
        logits, calls = trace(model, Tensor(expected_input[None]))
    leaves = [c for c in calls if c.is_leaf]
    assert [layer["name"] for layer in reply["layers"]] == [c.name for c in leaves]
    for layer, call in zip(reply["layers"], leaves):
        assert np.array_equal(arr(layer["output"]), call.output.data[0]), layer["name"]
    assert np.array_equal(arr(reply["logits"]), logits.data[0])
    # an independent truth for the first layer: convnp.reference's naive loops
    first = model.conv1 if name == "lenet5" else model.stem if name == "custom" else next(
        m for m in model.modules() if isinstance(m, nn.Conv2d))
    naive = reference.conv2d_forward(expected_input[None].astype(np.float64), first.weight.data.astype(np.float64),
                             None if first.bias is None else first.bias.data.astype(np.float64),
                             stride=first.stride, padding=first.padding)
    np.testing.assert_allclose(arr(reply["layers"][0]["output"]), naive[0], rtol=1e-5, atol=1e-5)
    # probabilities and top classes as convnp predict computes them
    from convnp.predict import predict_arrays

    top = predict_arrays(model, expected_input[None], prep["classes"], top=3)[0]
    assert [(t["class"], pytest.approx(t["probability"], abs=1e-7)) for t in reply["top"][:3]] == top
    assert reply["label"] == int(y[1])


def test_forward_layers_name_their_input(explored):
    name, *_, ex = explored
    layers = ex.forward({"sample": 0})["layers"]
    assert layers[0]["input_from"] == -1
    for layer in layers[1:]:
        assert 0 <= layer["input_from"] < layer["index"]
    if name == "lenet5":  # conv2 reads the first pooling's output
        assert layers[3]["name"] == "conv2" and layers[layers[3]["input_from"]]["type"] == "MaxPool2d"


def test_a_drawing_is_prepared_exactly_as_convnp_predict_prepares_the_same_picture(tmp_path):
    model, info, samples = make_model("lenet5")
    ex = Explorer(model, info, samples=samples)
    canvas = np.zeros((280, 280), dtype=np.uint8)
    canvas[40:60, 60:220] = 255      # a 7: the bar ...
    for i in range(60, 250):         # ... and the stroke down
        canvas[i, max(0, 200 - (i - 60) // 2):210 - (i - 60) // 2] = 255
    Image.fromarray(canvas).save(tmp_path / "seven.png")
    expected = preprocess(tmp_path / "seven.png", info["preprocessing"])
    drawing = {"dtype": "uint8", "shape": [280, 280], "data": base64.b64encode(canvas.tobytes()).decode()}
    reply = ex.forward({"drawing": drawing})
    assert np.array_equal(arr(reply["input"]), expected)
    assert abs(float(arr(reply["display"]).sum()) - 0) > 1  # the prepared, un-normalised picture


def test_bad_forward_requests_are_request_errors():
    model, info, samples = make_model("lenet5")
    ex = Explorer(model, info, samples=samples)
    with pytest.raises(RequestError, match="sample must be an index from 0 to 3"):
        ex.forward({"sample": 9})
    with pytest.raises(RequestError, match=r"input must have shape \[1, 28, 28\]"):
        ex.forward({"input": encode(np.zeros((1, 32, 32)))})
    with pytest.raises(RequestError, match="give one of"):
        ex.forward({})


def test_filters_are_the_conv_weights(explored):
    name, model, *_, ex = explored
    rows = [r for r in ex.summary.rows if r.is_leaf]
    conv_index = next(i for i, r in enumerate(rows) if r.type == "Conv2d")
    reply = ex.layer_filter({"layer": conv_index})
    module = dict(model.named_modules())[rows[conv_index].name]
    assert np.array_equal(arr(reply["weight"]), module.weight.data)
    relu_index = next(i for i, r in enumerate(rows) if r.type == "ReLU")
    with pytest.raises(RequestError, match="not a Conv2d"):
        ex.layer_filter({"layer": relu_index})


# --- panel 3: receptive fields --------------------------------------------------------------------------------
def test_the_race_has_lenet5s_true_receptive_fields():
    model, info, samples = make_model("lenet5")
    race = Explorer(model, info, samples=samples).race({"patch": 4})
    sizes = [r["rf_size"][0] for r in race["cnn"][:6]]
    assert sizes == [5, 5, 6, 14, 14, 16]  # conv1, relu, pool, conv2, relu, pool
    assert race["cnn"][7]["rf_global"]     # fc1
    assert race["vit"][0]["rf_size"] == [4, 4] and race["vit"][0]["tokens"] == 49
    assert race["vit"][1]["rf_global"] and race["vit"][1]["rf_size"] == [28, 28]
    with pytest.raises(RequestError, match="larger than"):
        Explorer(model, info, samples=samples).race({"patch": 29})


def _gradient_support(model, input_size, layer_name, occurrence, channel, unit):
    """The input pixels whose gradient on one unit is non-zero, for a model whose weights are positive and
    whose layers are linear (so every pixel of the window counts)."""
    x = Tensor(np.ones((1, *input_size), dtype=np.float32), requires_grad=True)
    _, calls = trace(model, x)
    call = [c for c in calls if c.name == layer_name][occurrence]
    call.output[0:1, channel:channel + 1, unit[0]:unit[0] + 1, unit[1]:unit[1] + 1].sum().backward()
    rows, cols = np.nonzero(np.abs(x.grad[0]).sum(axis=0))
    return [int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())]


def test_the_field_of_a_unit_is_the_set_of_pixels_that_can_move_it():
    # convolutions with padding, stride and dilation and average pooling, all weights positive
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(3, 2, 3, stride=2, padding=2),
                          nn.Conv2d(2, 2, 3, dilation=2, padding=1), nn.Flatten(), nn.Linear(40, 3))
    for p in model.parameters():
        p.data[:] = np.abs(p.data) + 0.1
    ex = Explorer(model, input_size=(2, 23, 19))
    names = ["0", "1", "2", "3"]
    shapes = [row.output_shape[2:] for row in ex.summary.leaf_rows()]
    for layer, (name, shape) in enumerate(zip(names, shapes)):
        for unit in [(0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, shape[1] // 3)]:
            reply = ex.field({"layer": layer, "unit": list(unit)})
            assert reply["box"] == _gradient_support(model, (2, 23, 19), name, 0, 0, unit), (name, unit)


def test_field_errors():
    model, info, samples = make_model("lenet5")
    ex = Explorer(model, info, samples=samples)
    with pytest.raises(RequestError, match="inside the 24x24 map"):
        ex.field({"layer": 0, "unit": [24, 0]})
    assert ex.field({"layer": 7, "unit": [0, 0]})["global"]


# --- panel 1: the convolution ---------------------------------------------------------------------------------
def test_conv_of_the_tutorials_line_with_sobel_x_is_the_hand_computed_map():
    ex = Explorer()
    reply = ex.conv({"input": "line7", "kernel": "sobel_x"})
    assert np.array_equal(arr(reply["output"]), np.tile([0, 4, 0, -4, 0], (5, 1)))
    reply = ex.conv({"input": "ticket4", "kernel": "horizontal_bar"})
    np.testing.assert_allclose(arr(reply["output"]), [[0.852, 0.789], [0.817, 0.874]], atol=1e-6)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (3, 2)])
def test_conv_terms_are_the_windows_times_the_kernel_and_sum_to_convnps_output(stride, padding):
    ex = Explorer()
    kernel = [[0.5, -1, 2], [0, 1.5, -0.25], [3, 1, -2]]
    reply = ex.conv({"input": "edge8", "kernel": kernel, "stride": stride, "padding": padding})
    image = np.zeros((8, 8), np.float32)
    image[:, 4:] = 1
    expected = F.conv2d(image[None, None], np.array(kernel, np.float32)[None, None], stride=stride,
                        padding=padding).data[0, 0]
    output, windows, products = arr(reply["output"]), arr(reply["windows"]), arr(reply["products"])
    assert np.array_equal(output, expected)
    naive = reference.conv2d_forward(image[None, None].astype(np.float64), np.array(kernel)[None, None], None,
                             stride=stride, padding=padding)[0, 0]
    np.testing.assert_allclose(products.sum(axis=(2, 3)), naive, atol=1e-6)
    padded = np.pad(image, padding)
    i, j = output.shape[0] - 1, output.shape[1] - 1
    assert np.array_equal(windows[i, j], padded[i * stride:i * stride + 3, j * stride:j * stride + 3])


def test_impossible_conv_settings_give_convnps_own_message():
    ex = Explorer()
    with pytest.raises(ValueError) as truth:
        F.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(RequestError) as error:
        ex.conv({"input": "ticket4", "kernel": [[1] * 5] * 5})
    assert str(error.value) == str(truth.value)
    with pytest.raises(RequestError, match="stride must be >= 1|stride"):
        ex.conv({"input": "line7", "kernel": "blur", "stride": 0})
    with pytest.raises(RequestError, match="must be square"):
        ex.conv({"input": "line7", "kernel": [[1, 2, 3]]})
    with pytest.raises(RequestError, match="unknown kernel"):
        ex.conv({"input": "line7", "kernel": "nope"})


# --- panel 4: the cake builder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, model, input_size", [
    ("lenet5", models.LeNet5(), (1, 28, 28)), ("tinycnn", models.TinyCNN(), (1, 8, 8)),
    ("lenet5-classic", models.LeNet5Classic(in_channels=3), (3, 32, 32)), ("smallvgg", models.SmallVGG(), (3, 32, 32))])
def test_cake_presets_match_convnp_summary_of_the_real_models(preset, model, input_size):
    ex = Explorer()
    reply = ex.stack(ex.presets()["stacks"][preset])
    s = summary(model, input_size)
    assert reply["error"] is None
    assert reply["totals"] == {"params": s.total_params, "macs": s.total_mult_adds, "flops": s.flops}
    model_rows = [r for r in s.leaf_rows() if r.type != "Flatten" or preset != "smallvgg"]
    shapes = [tuple(r["output_shape"]) for r in reply["rows"]]
    assert shapes[-1] == tuple(model_rows[-1].output_shape)
    assert [r["rf_size"] for r in reply["rows"] if not r["rf_global"]][-1] == \
        list([r.rf_size for r in model_rows if not r.rf_global][-1])


def test_cake_code_builds_the_same_stack():
    ex = Explorer()
    request = {"input_shape": [1, 12, 12], "blocks": [
        {"type": "conv", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "avgpool", "kernel": 2, "stride": 1}, {"type": "flatten"},
        {"type": "linear", "out_features": 7}, {"type": "batchnorm"}, {"type": "dropout"}]}
    reply = ex.stack(request)
    namespace = {}
    exec(reply["code"], namespace)  # noqa: S102 - the code the page offers to copy
    s = summary(namespace["model"], (1, 12, 12))
    assert [r["output_shape"] for r in reply["rows"]] == [list(r.output_shape) for r in s.leaf_rows()]
    assert [r["params"] for r in reply["rows"]] == [r.num_params for r in s.leaf_rows()]
    assert [r["macs"] for r in reply["rows"]] == [r.macs for r in s.leaf_rows()]
    assert reply["rows"][0]["rf_size"] == [3, 3] and reply["rows"][3]["rf_size"] == [5, 5]


def test_a_broken_stack_names_the_block_and_gives_convnps_message():
    ex = Explorer()
    blocks = [{"type": "conv", "out_channels": 4, "kernel": 5}, {"type": "maxpool", "kernel": 2},
              {"type": "conv", "out_channels": 4, "kernel": 7}, {"type": "relu"}]
    reply = ex.stack({"input_shape": [1, 16, 16], "blocks": blocks})
    assert reply["block"] == 2 and reply["rows"] == []
    with pytest.raises(ValueError) as truth:
        nn.Conv2d(4, 4, 7)(Tensor(np.zeros((1, 4, 6, 6), np.float32)))
    assert reply["error"] == str(truth.value)
    reply = ex.stack({"input_shape": [1, 16, 16], "blocks": [{"type": "flatten"}, {"type": "conv"}]})
    assert reply["block"] == 1 and "put it before the flatten" in reply["error"]
    reply = ex.stack({"input_shape": [1, 16, 16], "blocks": [{"type": "conv", "in_channels": 3}]})
    assert reply["block"] == 0 and "3" in reply["error"]
    reply = ex.stack({"input_shape": [1, 16, 16], "blocks": [{"type": "relu"}, {"type": "attention"}]})
    assert reply["block"] == 1 and "type must be one of" in reply["error"]
    with pytest.raises(RequestError, match="input_shape"):
        ex.stack({"input_shape": [1, 0, 16], "blocks": []})


# --- the HTTP layer ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    model, info, samples = make_model("lenet5")
    ex = Explorer(model, info, samples=samples)
    srv = start(ex)
    yield srv, ex
    srv.shutdown()
    srv.server_close()


def http(srv, path, body=None, raw=None, headers=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(srv.url.rstrip("/") + path, data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def test_http_routes_give_the_same_answers_as_the_class(server):
    srv, ex = server
    assert srv.url.startswith("http://127.0.0.1:")
    status, body, headers = http(srv, "/")
    assert status == 200 and b"convnp explore" in body and headers["Content-Type"].startswith("text/html")
    status, body, _ = http(srv, "/api/model")
    assert status == 200 and json.loads(body)["totals"]["params"] == 44426
    status, body, _ = http(srv, "/api/forward", {"sample": 2})
    assert status == 200 and json.loads(body) == json.loads(json.dumps(ex.forward({"sample": 2})))
    status, body, headers = http(srv, "/static/main.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize("path", ["/static/../core.py", "/static/%2e%2e/core.py", "/static/..%2fcore.py",
                                  "/static//etc/passwd", "/static/", "/etc/passwd", "/static/../../../../etc/passwd"])
def test_only_the_package_static_files_are_served(server, path):
    status, body, _ = http(server[0], path)
    assert status == 404, path
    assert b"import" not in body


def test_bad_requests_get_4xx_with_a_message_and_the_server_survives(server, monkeypatch):
    srv, ex = server
    status, body, _ = http(srv, "/api/conv", raw=b"{not json")
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]
    status, body, _ = http(srv, "/api/conv", raw=b"[1, 2]")
    assert status == 400 and "JSON object" in json.loads(body)["error"]
    status, body, _ = http(srv, "/api/conv", {"input": "ticket4", "kernel": [[1] * 5] * 5})
    assert status == 400 and "smaller than the (dilated) kernel 5x5" in json.loads(body)["error"]
    with socket.create_connection(srv.server_address[:2], timeout=30) as connection:  # the body is never read
        connection.sendall(b"POST /api/forward HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n{")
        chunks = [connection.recv(65536)]
        while chunks[-1]:  # the server closes the connection after its reply
            chunks.append(connection.recv(65536))
        reply = b"".join(chunks).decode()
    assert reply.startswith("HTTP/1.1 413") and "larger than the 4,194,304 accepted" in reply
    status, body, _ = http(srv, "/api/nothing", {})
    assert status == 404
    monkeypatch.setattr(ex, "race", lambda request: 1 / 0)
    status, body, _ = http(srv, "/api/race", {"patch": 4})
    assert status == 500 and "ZeroDivisionError" in json.loads(body)["error"]
    status, body, _ = http(srv, "/api/model")
    assert status == 200


def test_concurrent_requests_all_get_their_own_right_answer(server):
    srv, ex = server
    expected = {i: json.loads(json.dumps(ex.forward({"sample": i}))) for i in range(4)}
    conv = json.loads(json.dumps(ex.conv({"input": "edge8", "kernel": "blur"})))

    def one(k):
        if k % 3 == 2:
            return "conv", json.loads(http(srv, "/api/conv", {"input": "edge8", "kernel": "blur"})[1])
        return k % 4, json.loads(http(srv, "/api/forward", {"sample": k % 4})[1])

    with ThreadPoolExecutor(8) as pool:
        for key, reply in pool.map(one, range(40)):
            assert reply == (conv if key == "conv" else expected[key])


# --- the live view ------------------------------------------------------------------------------------------------
def test_the_training_monitor_publishes_history_batches_and_layer_stats():
    from convnp import optim
    from convnp.data import DataLoader
    from convnp.train import fit

    convnp.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    model = models.TinyCNN()
    monitor = TrainingMonitor(interval=0.0)
    loader = DataLoader((x, y), 16, shuffle=True, seed=0)
    state_before = loader.rng.bit_generator.state
    history = fit(model, loader, DataLoader((x, y), 32), optim.Adam(model.parameters(), 1e-2), epochs=2,
                  callbacks=[monitor], progress=False, log=None)
    assert loader.rng.bit_generator.state != state_before  # (it was used by training, as always)
    snap = json.loads(json.dumps(monitor.snapshot()))
    assert snap["finished"] and snap["epochs"] == 2 and snap["steps_per_epoch"] == 4
    assert snap["batches"]["step"] == list(range(1, 9)) and len(snap["batches"]["loss"]) == 8
    assert snap["history"]["train_loss"] == pytest.approx(history["train_loss"])
    assert snap["history"]["val_accuracy"] == pytest.approx(history["val_accuracy"])
    layers = {layer["name"]: layer for layer in snap["layers"]}
    assert set(layers) == {"0", "4"}
    w = model[0].weight.data
    assert layers["0"]["weight"]["min"] == pytest.approx(float(w.min()))
    assert layers["0"]["weight"]["max"] == pytest.approx(float(w.max()))
    assert layers["0"]["grad"] is not None and layers["0"]["activation"]["max"] >= 0
    assert decode(layers["0"]["weight_picture"], "w").shape == (3, 3, 3)
    assert decode(layers["0"]["grad_picture"], "g").shape == (3, 3, 3)


def test_the_monitor_does_not_change_training():
    from convnp import optim
    from convnp.data import DataLoader
    from convnp.train import fit

    results = []
    for callbacks in ([], [TrainingMonitor(interval=0.0)]):
        convnp.manual_seed(0)
        rng = np.random.default_rng(0)
        x, y = rng.random((48, 1, 8, 8), dtype=np.float32), rng.integers(0, 3, 48)
        model = models.TinyCNN()
        fit(model, DataLoader((x, y), 16, shuffle=True, seed=0), None, optim.SGD(model.parameters(), 0.1),
            epochs=2, callbacks=callbacks, progress=False, log=None)
        results.append(model[0].weight.data.copy())
    assert np.array_equal(results[0], results[1])


# --- loading models, the command line ------------------------------------------------------------------------
CUSTOM_CODE = '''
from convnp import nn

class Tiny(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).relu().reshape((x.shape[0], -1)))
'''


def test_model_code_loads_a_users_class_and_its_checkpoint(tmp_path):
    (tmp_path / "mymodel.py").write_text(CUSTOM_CODE)
    cls = load_model_code(f"{tmp_path / 'mymodel.py'}:Tiny")
    original = cls(num_classes=3)
    prep = {"dataset": None, "mean": [0.0], "std": [1.0], "input_size": [1, 8, 8], "classes": ["a", "b", "c"]}
    checkpoint.save(tmp_path / "tiny.npz", original, preprocessing=prep)
    model, info = load_custom_model(cls, tmp_path / "tiny.npz")
    assert np.array_equal(model.conv.weight.data, original.conv.weight.data)
    ex = Explorer(model, info)
    x = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
    reply = ex.forward({"input": encode(x)})
    with no_grad():
        assert np.array_equal(arr(reply["logits"]), original(Tensor(x[None])).data[0])
    with pytest.raises(UserError, match="no nn.Module subclass named 'Nope'"):
        load_model_code(f"{tmp_path / 'mymodel.py'}:Nope")
    with pytest.raises(UserError, match="FILE.py:CLASS"):
        load_model_code("mymodel.py")


def test_explore_exports_a_static_copy_from_the_command_line(tmp_path):
    from convnp.cli import main

    (tmp_path / "mymodel.py").write_text(CUSTOM_CODE)
    cls = load_model_code(f"{tmp_path / 'mymodel.py'}:Tiny")
    prep = {"dataset": None, "mean": [0.0], "std": [1.0], "input_size": [1, 8, 8], "classes": ["a", "b", "c"]}
    checkpoint.save(tmp_path / "tiny.npz", cls(), preprocessing=prep)
    status = main(["explore", str(tmp_path / "tiny.npz"), "--model-code", f"{tmp_path / 'mymodel.py'}:Tiny",
                   "--export", str(tmp_path / "site")])
    assert status == 0
    html = (tmp_path / "site" / "index.html").read_text()
    assert "window.CONVNP_STATIC" in html and "<script type=\"module\"" not in html
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html


def test_train_explore_serves_the_live_view_while_training(tmp_path, capsys):
    from convnp.cli import main

    status = main(["train", "--dataset", "lines", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress",
                   "--explore", "0"])
    out = capsys.readouterr().out
    assert status == 0
    assert "live view at http://127.0.0.1:" in out
    assert (tmp_path / "run" / "last.npz").is_file()


def test_the_default_model_is_trained_on_the_bundled_digits_and_cached(tmp_path, monkeypatch):
    from convnp.explorer import commands

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "data"))
    real = commands.train_digits_model
    monkeypatch.setattr(commands, "train_digits_model", lambda folder, progress=True: real(folder, epochs=1,
                                                                                           progress=False))
    lines = []
    path = commands.default_checkpoint(log=lines.append)
    assert path.is_file() and "training LeNet-5 on scikit-learn's bundled digits" in lines[0]
    assert commands.default_checkpoint(log=lines.append) == path and "using" in lines[1]
    model, info = checkpoint.load_model(path)
    ex = Explorer(model, info)
    assert list(ex.samples[1][:10]) == list(range(10)) and ex.model_info()["samples"][3]["class"] == "3"
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "last.npz").write_bytes(path.read_bytes())
    assert str(commands.default_checkpoint(log=lines.append)) == "runs/demo/last.npz"


def test_the_default_model_goes_to_the_home_cache_when_the_data_folder_is_read_only(tmp_path, monkeypatch):
    import os

    from convnp.explorer import commands

    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVNP_DATA", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # the per-user cache is then ~/.cache/convnp
    real_access = os.access  # a read-only mount: access() says no even to root
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).startswith(str(shared))
                        else real_access(path, mode))
    trained = []
    monkeypatch.setattr(commands, "train_digits_model", lambda folder, progress=True: trained.append(folder))
    path = commands.default_checkpoint(log=lambda line: None)
    assert trained == [tmp_path / "home" / ".cache" / "convnp" / "explorer" / "digits-lenet5"]
    assert path == trained[0] / "last.npz"


def test_explore_help_and_a_missing_checkpoint_are_one_line(tmp_path, capsys):
    from convnp.cli import main

    assert main(["explore", "--help"]) == 0
    assert "--export" in capsys.readouterr().out
    assert main(["explore", str(tmp_path / "missing.npz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.npz" in err


def test_serving_binds_the_loopback_address_by_default_and_warns_otherwise():
    from convnp.explorer.server import check_host

    assert check_host("127.0.0.1") is None
    assert "other machines" in check_host("0.0.0.0")
    ex = Explorer()
    srv = start(ex)
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.shutdown()
        srv.server_close()
    thread_names = [t.name for t in threading.enumerate()]
    assert thread_names.count("convnp-explore") <= 1


def test_no_grad_in_one_thread_leaves_the_graph_of_another_alone():
    inside, outside = threading.Event(), threading.Event()
    seen = {}

    def evaluate():
        with no_grad():
            inside.set()
            outside.wait(10)

    worker = threading.Thread(target=evaluate)
    worker.start()
    inside.wait(10)
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    seen["grad"] = convnp.is_grad_enabled()
    (x * 2).sum().backward()  # the training thread keeps its graph while the server evaluates
    outside.set()
    worker.join()
    assert seen["grad"] and np.array_equal(x.grad, [2, 2, 2])


def test_convnp_explore_serves_prints_the_url_and_stops_cleanly_on_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    model, info, _ = make_model("tinycnn")
    checkpoint.save(tmp_path / "tiny.npz", model, preprocessing=info["preprocessing"])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "convnp", "explore", str(tmp_path / "tiny.npz"), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = process.stdout.readline()
        assert "serving TinyCNN at http://127.0.0.1:" in line, line + process.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/model", timeout=30) as response:
            assert json.loads(response.read())["model"] == "TinyCNN"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_the_forward_latency_benchmark_runs(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_explorer.py"
    spec = importlib.util.spec_from_file_location("bench_explorer", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--requests", "5"]) == 0
    out = capsys.readouterr().out
    assert "POST /api/forward, LeNet-5" in out and "median" in out


def test_the_page_refers_to_no_other_host():
    from convnp.explorer.server import STATIC

    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "style.css", "main.js", "util.js"}
    for file in files:
        text = file.read_text()
        for marker in ("http://", "https://", "//cdn", "@import", "url("):
            assert marker not in text, f"{file.name} contains {marker!r}"
