"""to_torch / from_torch: real torch modules with the same keys, outputs and gradients, both ways."""
import zlib

import numpy as np
import pytest

import convnp
from convnp import nn
from convnp.interop import from_torch, to_torch, torch_source
from convnp.interop.parity import ConcatNet, ResidualBN, parity_models
from convnp.interop.torch import TorchConversionError

torch = pytest.importorskip("torch")

MODELS = parity_models()
IDS = [name for name, _, _ in MODELS]


def no_dropout(model):
    """Dropout draws different masks in the two libraries: p = 0 makes train mode comparable."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("index", range(len(MODELS)), ids=IDS)
def test_outputs_and_every_parameter_gradient_match(index, mode):
    name, model, shape = MODELS[index]
    import copy

    # Training mode in float64: batch statistics over 8 examples amplify float32 rounding (a bias
    # feeding batch norm has a true gradient of 0, computed as rounding noise whose size depends on
    # summation order; ResNet-20 stacks 19 of them), so float32 agreement is a matter of luck with the
    # data; float64 agreement to ~1e-12 is what proves the conversion.  Evaluation runs in float32.
    dtype = np.float64 if mode == "train" else np.float32
    model = no_dropout(copy.deepcopy(model)).astype(dtype).train(mode == "train")
    twin = to_torch(model, np.zeros((1, *shape), dtype))
    assert isinstance(twin, torch.nn.Module) and twin.training == (mode == "train")
    assert list(twin.state_dict()) and set(twin.state_dict()) == set(model.state_dict())
    seed = zlib.crc32(name.encode())  # by name: adding a model to the list changes no other model's data
    x = np.random.default_rng(seed).standard_normal((8, *shape)).astype(dtype)
    dy_rng = np.random.default_rng(seed + 1)
    y = model(convnp.tensor(x))
    dy = dy_rng.standard_normal(y.shape).astype(dtype)
    y.backward(dy)
    yt = twin(torch.from_numpy(x))
    yt.backward(torch.from_numpy(dy))
    rtol, atol = (1e-9, 1e-10) if dtype == np.float64 else (1e-4, 1e-5)
    np.testing.assert_allclose(yt.detach().numpy(), y.data, rtol=rtol, atol=atol)
    torch_params = dict(twin.named_parameters())
    # the tolerance on the scale of the model's gradients (a bias feeding batch norm has a true gradient
    # of 0, which both libraries compute as rounding noise of the other gradients' size)
    scale = max(1.0, max(float(np.abs(p.grad).max()) for p in model.parameters()))
    for key, p in model.named_parameters():
        np.testing.assert_allclose(torch_params[key].grad.numpy(), p.grad, rtol=rtol * 10, atol=atol * 5 * scale,
                                   err_msg=key)
    if mode == "train":  # running statistics moved the same way
        buffers = dict(twin.named_buffers())
        for key, b in model.named_buffers():
            np.testing.assert_allclose(buffers[key].numpy(), b, rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("index", range(len(MODELS)), ids=IDS)
def test_from_torch_of_to_torch_round_trips_the_state_dict_bit_for_bit(index):
    name, model, shape = MODELS[index]
    back = from_torch(to_torch(model, np.zeros((1, *shape), np.float32)))
    assert type(back) is type(model)
    original, returned = model.state_dict(), back.state_dict()
    assert list(returned) == list(original)
    for key, value in original.items():
        assert returned[key].dtype == value.dtype and returned[key].shape == value.shape
        assert returned[key].tobytes() == value.tobytes(), key


def test_float64_models_stay_float64():
    model = convnp.models.TinyCNN().astype(np.float64)
    twin = to_torch(model)
    assert all(p.dtype == torch.float64 for p in twin.parameters())
    back = from_torch(twin)
    assert all(p.dtype == np.float64 for p in back.parameters())


def test_containers_stay_containers_and_custom_classes_keep_their_names():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3)))
    twin = to_torch(model)  # no trace needed: plain containers of layers
    assert type(twin) is torch.nn.Sequential and type(twin[2]) is torch.nn.Sequential
    assert type(twin[0]) is torch.nn.Conv2d and twin[0].kernel_size == (3, 3)
    assert type(to_torch(ResidualBN()).stem) is torch.nn.Sequential
    assert type(to_torch(ResidualBN())).__name__ == "ResidualBN"
    source = torch_source(ConcatNet(), np.zeros((1, 1, 10, 10), np.float32))
    assert "class ConcatNet(nn.Module):" in source and "torch.cat([" in source


def test_the_generated_source_runs_on_its_own(tmp_path):
    model = ResidualBN().eval()
    path = tmp_path / "residual_torch.py"
    path.write_text(torch_source(model, np.zeros((1, 3, 12, 12), np.float32)))
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our own generated file
    twin = namespace["Model"]()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(twin.eval()(torch.from_numpy(x)).numpy(), model(convnp.tensor(x)).data, atol=1e-5)


def test_from_torch_converts_plain_torch_models():
    torch.manual_seed(0)
    twin = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.LeakyReLU(0.1),
                               torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Dropout(0.2), torch.nn.Linear(64, 3))
    twin.eval()
    model = from_torch(twin)
    assert not model.training and isinstance(model[0], nn.Conv2d) and model[0].padding == (1, 1)
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model(convnp.tensor(x)).data, twin(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_from_torch_names_the_first_layer_it_cannot_convert():
    twin = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sequential(torch.nn.ReLU(), torch.nn.GELU()))
    with pytest.raises(TorchConversionError, match=r"'1.1' \(GELU\) has no convnp equivalent"):
        from_torch(twin)
    with pytest.raises(TorchConversionError, match=r"'0' \(MaxPool2d\) uses ceil_mode=True"):
        from_torch(torch.nn.Sequential(torch.nn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(TorchConversionError, match="count_include_pad=False"):
        from_torch(torch.nn.Sequential(torch.nn.AvgPool2d(2, padding=1, count_include_pad=False)))


class Indexing(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)[:, 1:3] * 2.0


def test_indexing_and_scalars_in_a_custom_forward():
    model = Indexing()
    twin = to_torch(model)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(), model(convnp.tensor(x)).data, atol=1e-6)


def test_to_torch_asks_for_an_input_when_it_cannot_guess():
    class NoHints(nn.Module):
        def forward(self, x):
            return x * 2.0

    with pytest.raises(TorchConversionError, match="pass example_input="):
        to_torch(NoHints())
