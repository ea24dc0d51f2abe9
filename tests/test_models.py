"""The ready-made models: shapes, parameter counts (by hand and against a torch twin), weight
exchange with PyTorch in both directions, and the classic sanity checks (initial loss = ln 10,
overfitting a tiny batch)."""
import math

import numpy as np
import pytest
import torch

import convnp
from convnp import Tensor, functional as F, models, nn
from helpers import assert_close, to_torch


def rng(seed=0):
    return np.random.default_rng(4000 + seed)


class TorchLeNet5(torch.nn.Module):
    """The PyTorch twin of convnp.models.LeNet5 / LeNet5Classic (same attribute names)."""

    def __init__(self, side=28, num_classes=10):
        super().__init__()
        flat = 16 * (((side - 4) // 2 - 4) // 2) ** 2
        self.conv1 = torch.nn.Conv2d(1, 6, 5)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(flat, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, num_classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(torch.relu(self.fc2(x)))


def torch_simple_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(392, 10))


def torch_tiny_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(27, 3))


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 100), torch.nn.ReLU(),
                                          torch.nn.Linear(100, 10))

    def forward(self, x):
        return self.layers(x)


class TorchBasicBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c_out)
        self.shortcut = (torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                             torch.nn.BatchNorm2d(c_out))
                         if stride != 1 or c_in != c_out else torch.nn.Identity())

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TorchResNet20(torch.nn.Module):
    """He et al.'s CIFAR ResNet-20 with 1x1-convolution shortcuts, convnp.models.ResNet20's names."""

    def __init__(self, widths=(16, 32, 64), blocks=3):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                        torch.nn.BatchNorm2d(widths[0]), torch.nn.ReLU())
        layers, channels = [], widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                layers.append(TorchBasicBlock(channels, width, 2 if stage > 0 and block == 0 else 1))
                channels = width
        self.stages = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Linear(channels, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1))


def torch_mnist_cnn():
    nn_ = torch.nn
    return nn_.Sequential(nn_.Conv2d(1, 32, 3), nn_.ReLU(), nn_.Conv2d(32, 64, 3), nn_.ReLU(), nn_.MaxPool2d(2),
                          nn_.Dropout(0.25), nn_.Flatten(), nn_.Linear(9216, 128), nn_.ReLU(), nn_.Dropout(0.5),
                          nn_.Linear(128, 10))


# ResNet-20 by hand: stem 3*16*9 + BN 2*16; stage 1: 3 blocks of two 16->16 3x3 convs and two BNs;
# stage 2: 16->32 and 32->32 convs, two BNs, a 1x1 16->32 shortcut + BN, then 2 blocks of 32->32;
# stage 3 likewise at 64; the classifier 64*10 + 10.
RESNET20 = ((3 * 16 * 9 + 32) + 3 * (2 * 16 * 16 * 9 + 2 * 32)
            + (16 * 32 * 9 + 32 * 32 * 9 + 2 * 64 + 16 * 32 + 64) + 2 * (2 * 32 * 32 * 9 + 2 * 64)
            + (32 * 64 * 9 + 64 * 64 * 9 + 2 * 128 + 32 * 64 + 128) + 2 * (2 * 64 * 64 * 9 + 2 * 128) + 64 * 10 + 10)

# name: (convnp model, torch twin, input shape, output shape, parameter count worked out by hand)
MODELS = {
    "LeNet5": (models.LeNet5, TorchLeNet5, (2, 1, 28, 28), (2, 10),
               (1 * 6 * 25 + 6) + (6 * 16 * 25 + 16) + (256 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)),
    "LeNet5Classic": (models.LeNet5Classic, lambda: TorchLeNet5(32), (2, 1, 32, 32), (2, 10),
                      156 + 2416 + (400 * 120 + 120) + 10164 + 850),
    "SimpleCNN": (models.SimpleCNN, torch_simple_cnn, (2, 1, 28, 28), (2, 10), 4 * 9 + 4 + 8 * 36 + 8 + 392 * 10 + 10),
    "TinyCNN": (models.TinyCNN, torch_tiny_cnn, (2, 1, 8, 8), (2, 3), 3 * 9 + 3 + 27 * 3 + 3),
    "MLP": (lambda: models.MLP(784, 100, 10), TorchMLP, (2, 1, 28, 28), (2, 10), 784 * 100 + 100 + 100 * 10 + 10),
    "ResNet20": (models.ResNet20, TorchResNet20, (2, 3, 32, 32), (2, 10), RESNET20),
    "MnistCNN": (models.MnistCNN, torch_mnist_cnn, (2, 1, 28, 28), (2, 10),
                 (32 * 9 + 32) + (32 * 64 * 9 + 64) + (9216 * 128 + 128) + (128 * 10 + 10)),
}
EXPECTED_COUNTS = {"LeNet5": 44_426, "LeNet5Classic": 61_706, "SimpleCNN": 4_266, "TinyCNN": 114, "MLP": 79_510,
                   "ResNet20": 272_474, "MnistCNN": 1_199_882}


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_and_parameter_counts(name):
    make, make_twin, in_shape, out_shape, by_hand = MODELS[name]
    model, twin = make(), make_twin()
    assert by_hand == EXPECTED_COUNTS[name]
    assert model.num_parameters() == by_hand == sum(p.numel() for p in twin.parameters())
    assert sum(p.numel() for p in model.parameters()) == by_hand
    y = model(Tensor(rng().standard_normal(in_shape).astype(np.float32)))
    assert y.shape == out_shape and y.dtype == np.float32


@pytest.mark.parametrize("name", list(MODELS))
def test_twin_state_dict_loads_and_gives_the_same_logits(name):
    make, make_twin, in_shape, _, _ = MODELS[name]
    model, twin = make(), make_twin()
    model.load_state_dict(twin.state_dict())  # strict: the keys are identical
    model.eval(), twin.eval()  # dropout off, running statistics (the same, loaded) in batch norm
    x0 = rng(1).standard_normal(in_shape).astype(np.float32)
    assert_close(model(Tensor(x0)).data, twin(to_torch(x0)), 1e-4, 1e-5, "logits")


def test_resnet20_training_step_matches_pytorch_through_fused_blocks_and_shortcuts():
    # float64, so 20 layers of batch statistics over 4 images cannot hide a wrong gradient in rounding
    twin = TorchResNet20().double()
    model = models.ResNet20().astype(np.float64)
    model.load_state_dict(twin.state_dict())
    x0 = rng(5).standard_normal((4, 3, 32, 32))
    target = rng(6).integers(0, 10, 4)
    loss = F.cross_entropy(model(Tensor(x0)), target)  # training mode: batch statistics, fused BN + ReLU
    loss.backward()
    loss_t = torch.nn.functional.cross_entropy(twin(to_torch(x0)), torch.from_numpy(target))
    loss_t.backward()
    assert_close(loss.data, loss_t, 1e-10, 1e-10, "loss")
    grads = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert_close(p.grad, grads[name].grad, 1e-8, 1e-10, f"gradient of {name}")
    for name, buffer in twin.named_buffers():
        if "running" in name:
            assert_close(model.state_dict()[name], buffer, 1e-10, 1e-10, name)


def test_lenet5_weights_move_both_ways_with_identical_logits_and_gradients():
    torch.manual_seed(0)
    twin = TorchLeNet5()
    model = models.LeNet5()
    model.load_state_dict(twin.state_dict())
    x0 = rng(2).standard_normal((16, 1, 28, 28)).astype(np.float32)
    target = rng(3).integers(0, 10, 16)

    logits, logits_t = model(Tensor(x0)), twin(to_torch(x0))
    assert_close(logits.data, logits_t, 1e-4, 1e-5, "logits")
    loss = F.cross_entropy(logits, target)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.from_numpy(target))
    assert_close(loss.data, loss_t, 1e-5, 1e-6, "loss")
    loss.backward()
    loss_t.backward()
    twin_params = dict(twin.named_parameters())
    assert [n for n, _ in model.named_parameters()] == list(twin_params)
    for key, p in model.named_parameters():
        assert_close(p.grad, twin_params[key].grad, 1e-4, 1e-5, f"gradient of {key}")

    # and back: convnp weights (perturbed, so they are not torch's own) into a fresh torch model
    for p in model.parameters():
        p.data += rng(4).standard_normal(p.shape).astype(np.float32) * 0.01
    back = TorchLeNet5()
    back.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    assert_close(model(Tensor(x0)).data, back(to_torch(x0)), 1e-4, 1e-5, "logits after the round trip")


def test_initial_loss_is_ln_10():
    convnp.manual_seed(0)
    model = models.LeNet5()
    x = Tensor(rng(5).standard_normal((256, 1, 28, 28)).astype(np.float32))
    target = rng(6).integers(0, 10, 256)
    with convnp.no_grad():
        loss = F.cross_entropy(model(x), target).item()
    assert abs(loss - math.log(10)) < 0.15


def _tiny_problem(n=32):
    r = rng(7)
    return r.standard_normal((n, 1, 28, 28)).astype(np.float32), r.integers(0, 10, n)


def test_adam_steps_reduce_the_loss():
    if not hasattr(convnp.optim, "Adam"):
        pytest.skip("convnp.optim.Adam is not available")
    convnp.manual_seed(1)
    model = models.LeNet5()
    x, target = _tiny_problem(16)
    optimizer = convnp.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(Tensor(x)), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05 and all(np.isfinite(losses))


def test_overfits_a_tiny_batch_with_hand_written_sgd():
    convnp.manual_seed(2)
    model = models.LeNet5()
    x, target = _tiny_problem(32)
    velocity = {id(p): np.zeros_like(p.data) for p in model.parameters()}
    for step in range(150):
        model.zero_grad()
        logits = model(Tensor(x))
        loss = F.cross_entropy(logits, target)
        loss.backward()
        with convnp.no_grad():  # SGD with momentum 0.9, written out
            for p in model.parameters():
                v = velocity[id(p)]
                v *= 0.9
                v += p.grad
                p.data -= 0.02 * v
    with convnp.no_grad():
        logits = model(Tensor(x))
    accuracy = (logits.argmax(dim=1) == target).float().mean().item()
    assert accuracy == 1.0, f"accuracy {accuracy} after 150 steps, loss {F.cross_entropy(logits, target).item()}"
    assert F.cross_entropy(logits, target).item() < 0.1


def test_models_eval_mode_and_inputs():
    model = models.LeNet5().eval()
    assert not model.fc1.training
    logits = model(Tensor(np.zeros((1, 1, 28, 28), dtype=np.float32)))
    np.testing.assert_allclose(logits.data, model(np.zeros((1, 1, 28, 28), dtype=np.float32)).data)
    mlp = models.MLP(20, [16, 8], 4)
    assert mlp(Tensor(np.ones((3, 20), dtype=np.float32))).shape == (3, 4)
    assert mlp.num_parameters() == 20 * 16 + 16 + 16 * 8 + 8 + 8 * 4 + 4
    assert [n for n, _ in mlp.named_parameters()][:2] == ["layers.1.weight", "layers.1.bias"]
    assert isinstance(models.SimpleCNN(), nn.Sequential)
