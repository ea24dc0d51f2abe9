"""examples/pytorch_style/: PyTorch scripts that differ from their PyTorch versions only in the
import lines.  Each is loaded twice, as written (convnp) and with the imports swapped for torch's;
from the same initial weights, a few training steps must give the same losses in both.  Dropout is
set to p=0 in both runs (the two libraries draw different random masks).  Data is small and
synthetic; the scripts' main() also runs end to end on tiny fake dataset files."""
import contextlib
import io
import re
import types
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

import convnp
from convnp.data.idx import write_idx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pytorch_style"
TORCH_IMPORTS = {
    "import convnp as torch": "import torch",
    "import convnp.nn as nn": "import torch.nn as nn",
    "import convnp.nn.functional as F": "import torch.nn.functional as F",
    "import convnp.optim as optim": "import torch.optim as optim",
    "from convnp.optim.lr_scheduler import StepLR": "from torch.optim.lr_scheduler import StepLR",
    "from convnp.utils.data import DataLoader, random_split": "from torch.utils.data import DataLoader, random_split",
    # torchvision is not a test dependency: the torch runs below never touch datasets or transforms
    "from convnp.vision import datasets, transforms": "from convnp.vision import datasets, transforms",
}


def load(name, library):
    source = (EXAMPLES / name).read_text()
    if library == "torch":
        lines = source.split("\n")
        swapped = [TORCH_IMPORTS.get(line, line) for line in lines]
        for before, after in zip(lines, swapped):
            if before != after:
                assert before.startswith(("import ", "from ")), before
        assert any("convnp" in line for line in lines if line.startswith(("import", "from")))
        source = "\n".join(swapped)
        imports = [line for line in swapped if line.startswith(("import ", "from ")) and "convnp.vision" not in line]
        assert not any("convnp" in line for line in imports), imports
    module = types.ModuleType(f"{name[:-3]}_{library}")
    module.__file__ = str(EXAMPLES / name)
    exec(compile(source, str(EXAMPLES / name), "exec"), module.__dict__)
    return module


def copy_weights(ours, theirs):
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})


def no_dropout(model):
    for module in model.modules():
        if type(module).__name__ in ("Dropout", "Dropout2d"):
            module.p = 0.0


def loaders(x, y, batch_size):
    ours = convnp.utils.data.DataLoader(convnp.utils.data.TensorDataset(x, y), batch_size=batch_size)
    theirs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=batch_size)
    return ours, theirs


def printed_losses(text):
    return [float(v) for v in re.findall(r"Loss: ([0-9.]+)", text)]


def test_mnist_cnn_matches_torch():
    ours_mod, torch_mod = load("mnist_cnn.py", "convnp"), load("mnist_cnn.py", "torch")
    ours, theirs = ours_mod.Net(), torch_mod.Net()
    copy_weights(ours, theirs)
    no_dropout(ours)
    no_dropout(theirs)
    r = np.random.default_rng(0)
    x, y = r.standard_normal((24, 1, 28, 28)).astype(np.float32), r.integers(0, 10, 24)
    ours_loader, torch_loader = loaders(x, y, 8)
    args = Namespace(log_interval=1, dry_run=False)
    results = {}
    runs = (("convnp", ours_mod, ours, ours_loader), ("torch", torch_mod, theirs, torch_loader))
    for library, module, model, loader in runs:
        optimizer = module.optim.Adadelta(model.parameters(), lr=1.0)
        scheduler = module.StepLR(optimizer, step_size=1, gamma=0.7)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for epoch in (1, 2):
                module.train(args, model, module.torch.device("cpu"), loader, optimizer, epoch)
                test_loss = module.test(model, module.torch.device("cpu"), loader)
                scheduler.step()
        results[library] = (printed_losses(out.getvalue()), test_loss, scheduler.get_last_lr())
    (ours_losses, ours_test, ours_lr), (their_losses, their_test, their_lr) = results["convnp"], results["torch"]
    assert len(ours_losses) == 6 and ours_losses[-1] < ours_losses[0]
    np.testing.assert_allclose(ours_losses, their_losses, rtol=2e-4, atol=1e-6)
    assert ours_test == pytest.approx(their_test, rel=1e-3) and ours_lr == pytest.approx(their_lr)


def test_resnet_cifar_matches_torch():
    ours_mod, torch_mod = load("resnet_cifar.py", "convnp"), load("resnet_cifar.py", "torch")
    ours, theirs = ours_mod.ResNet8(), torch_mod.ResNet8()
    copy_weights(ours, theirs)
    r = np.random.default_rng(1)
    x, y = r.standard_normal((24, 3, 32, 32)).astype(np.float32), r.integers(0, 10, 24)
    ours_loader, torch_loader = loaders(x, y, 8)
    results = {}
    runs = (("convnp", ours_mod, ours, ours_loader), ("torch", torch_mod, theirs, torch_loader))
    for library, module, model, loader in runs:
        criterion = module.nn.CrossEntropyLoss()
        optimizer = module.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        scheduler = module.torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
        with contextlib.redirect_stdout(io.StringIO()):
            losses = module.train(model, "cpu", loader, optimizer, criterion, 0)
            scheduler.step()
            losses += module.train(model, "cpu", loader, optimizer, criterion, 1, max_batches=2)
            accuracy = module.test(model, "cpu", loader, criterion)
        results[library] = (losses, accuracy)
    np.testing.assert_allclose(results["convnp"][0], results["torch"][0], rtol=2e-4, atol=1e-5)
    assert results["convnp"][1] == results["torch"][1]
    np.testing.assert_allclose(ours.bn1.running_var, theirs.bn1.running_var.numpy(), rtol=1e-4)


def test_finetune_frozen_matches_torch():
    ours_mod, torch_mod = load("finetune_frozen.py", "convnp"), load("finetune_frozen.py", "torch")
    ours, theirs = ours_mod.SmallCNN(), torch_mod.SmallCNN()
    copy_weights(ours, theirs)
    frozen_before = ours.features.conv1.weight.data.copy()
    ours_trainable = ours_mod.freeze_and_replace_head(ours, 5)
    their_trainable = torch_mod.freeze_and_replace_head(theirs, 5)
    copy_weights(ours, theirs)  # the new heads start equal too
    no_dropout(ours)
    no_dropout(theirs)
    assert len(ours_trainable) == len(their_trainable) == 2
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == \
        [n for n, p in theirs.named_parameters() if p.requires_grad] == ["classifier.2.weight", "classifier.2.bias"]
    r = np.random.default_rng(2)
    x, y = r.standard_normal((32, 1, 28, 28)).astype(np.float32), r.integers(0, 5, 32)
    ours_loader, torch_loader = loaders(x, y, 8)
    ours_losses = ours_mod.train_epoch(ours, ours_loader, ours_mod.optim.Adam(ours_trainable, lr=3e-3), "cpu")
    their_losses = torch_mod.train_epoch(theirs, torch_loader, torch_mod.optim.Adam(their_trainable, lr=3e-3), "cpu")
    np.testing.assert_allclose(ours_losses, their_losses, rtol=2e-4, atol=1e-6)
    np.testing.assert_array_equal(ours.features.conv1.weight.data, frozen_before)  # frozen: untouched
    assert ours.features.conv1.weight.grad is None
    assert ours_mod.evaluate(ours, ours_loader, "cpu") == torch_mod.evaluate(theirs, torch_loader, "cpu")


# --- the scripts' main() end to end, on tiny fake dataset files ----------------------------------------------
def fake_idx(folder, n, seed):
    r = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", r.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", r.integers(0, 10, n).astype(np.uint8))


def test_mnist_cnn_main_runs(tmp_path, capsys):
    fake_idx(tmp_path / "mnist", 40, 0)
    module = load("mnist_cnn.py", "convnp")
    module.main(["--epochs", "1", "--batch-size", "16", "--test-batch-size", "20", "--data-root", str(tmp_path),
                 "--log-interval", "1"])
    out = capsys.readouterr().out
    assert len(printed_losses(out)) == 3 and "Test set: Average loss" in out


def test_resnet_cifar_main_runs(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    r = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.concatenate([r.integers(0, 10, (4, 1)), r.integers(0, 256, (4, 3072))], axis=1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())
    module = load("resnet_cifar.py", "convnp")
    module.main(["--epochs", "1", "--batch-size", "8", "--max-batches", "1", "--data-root", str(tmp_path)])
    assert "Test Loss" in capsys.readouterr().out


def test_finetune_frozen_main_runs(tmp_path, capsys):
    fake_idx(tmp_path / "mnist", 40, 1)
    fake_idx(tmp_path / "fashion-mnist", 40, 2)
    module = load("finetune_frozen.py", "convnp")
    module.main(["--data-root", str(tmp_path), "--subset", "0", "--batch-size", "16", "--max-batches", "2"])
    out = capsys.readouterr().out
    assert "pretraining: loss" in out and "validation accuracy" in out and "fine-tuning 2570 of 3834 parameters" in out


