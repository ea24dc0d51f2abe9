"""convnp's benchmark suite: speed, memory and efficiency against PyTorch on the CPU, in one run.

    convnp bench                     # everything: a table, and JSON (benchmarks/results/latest.json)
    convnp bench --quick             # fewer repetitions and steps (a smoke run)
    convnp bench --only lenet inference --threads 2
    python benchmarks/run.py ...     # the same, from a checkout

One run measures both libraries on the same machine with the same number of threads
(``convnp.set_num_threads`` and ``torch.set_num_threads``, set through the environment), on the same
batches from the same loader.  Each library runs in a worker process of its own: in one process,
PyTorch's OpenMP threads and OpenBLAS's threads spin against each other and slow both down (several
times, docs/performance.md).  The timed sections take turns
between the two workers, one repetition at a time, so that a change in the machine's load falls on both
libraries alike; times are medians of several repetitions after a warm-up.  PyTorch is optional:
without it, its rows are skipped, saying so.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

import convnp
from convnp import data, functional as F, nn, optim, reference
from convnp.errors import positive_int
from convnp.models import LeNet5, MnistCNN, ResNet20, SmallVGG

SECTIONS = ["lenet", "vgg", "resnet", "smallcnn", "inference", "memory", "naive", "gflops", "scaling"]
torch = None  # imported only inside a PyTorch worker process
DEVICE = "cpu"  # a worker's --device: where its models and batches live ("cuda": CuPy / PyTorch CUDA)
CPU_ONLY = {"memory", "naive", "gflops", "scaling"}  # process memory and CPU peaks: no GPU counterpart

LENET_SAMPLES = 60_000
BATCH = 128
# Each timed section runs for at least this long before its first timed repetition: the first fraction
# of a second runs slower (a cold allocator and cache, idle cores; docs/performance.md).
WARMUP_SECONDS = 1.0


# --- twins: the same networks in PyTorch ------------------------------------------------------------
def torch_lenet():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10))


def torch_vgg(widths=(32, 64, 128), in_channels=3, num_classes=10):
    nn = torch.nn
    layers, channels = [], in_channels
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def torch_resnet20(widths=(16, 32, 64), blocks=3, in_channels=3, num_classes=10):
    """convnp.models.ResNet20's twin: BasicBlocks with a 1x1 convolution + BN shortcut where the shape changes."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                             if stride != 1 or c_in != c_out else nn.Identity())

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    layers, channels = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                        nn.ReLU()], widths[0]
    for stage, width in enumerate(widths):
        for block in range(blocks):
            layers.append(BasicBlock(channels, width, 2 if stage > 0 and block == 0 else 1))
            channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def torch_mnist_cnn():
    """convnp.models.MnistCNN's twin (the network of PyTorch's MNIST example)."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(128, 10))


class Network(NamedTuple):
    """One benchmark network: its row, its input, batch and optimizer, and how to build it in each library."""
    row: str
    input_shape: tuple  # one example, (C, H, W)
    batch: int
    optimizer: str  # "adam" (default settings) or "adadelta" (lr 1.0, as PyTorch's MNIST example)
    convnp_model: Callable
    torch_model: Callable
    steps: int = 20  # timed steps a repetition (quick: 4)

    def make(self, library):
        """(model, optimizer) of ``library``."""
        if library == "convnp":
            model = self.convnp_model().to(DEVICE)
            adam, adadelta = optim.Adam, optim.Adadelta
        else:
            model = self.torch_model().to(DEVICE)
            adam, adadelta = torch.optim.Adam, torch.optim.Adadelta
        return model, adam(model.parameters()) if self.optimizer == "adam" else adadelta(model.parameters(), lr=1.0)


NETWORKS = {
    "lenet": Network("LeNet-5 training epoch (s)", (1, 28, 28), BATCH, "adam", LeNet5, torch_lenet),
    "vgg": Network("VGG-style training step (s)", (3, 32, 32), BATCH, "adam", SmallVGG, torch_vgg),
    "resnet": Network("ResNet-20-style training step (s)", (3, 32, 32), BATCH, "adam", ResNet20, torch_resnet20),
    "smallcnn": Network("small CNN (MNIST example) training step (s)", (1, 28, 28), 64, "adadelta", MnistCNN,
                        torch_mnist_cnn),
}


# --- measurement helpers ---------------------------------------------------------------------------
def warm_up(function, seconds=WARMUP_SECONDS):
    """Run ``function`` until ``seconds`` have passed (at least once)."""
    start = time.perf_counter()
    function()
    while time.perf_counter() - start < seconds:
        function()


def median_time(function, repeats, warmup=WARMUP_SECONDS):
    """Median seconds of ``repeats`` calls, after ``warmup`` seconds of calls (0: none)."""
    if warmup:
        warm_up(function, warmup)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def mnist_shaped(samples, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((samples, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, samples)


def on_device(library, array):
    """A batch as the library's tensor on DEVICE (a copy to the GPU there, as a training loop makes)."""
    if library == "convnp":
        tensor = convnp.Tensor(array)
        return tensor if DEVICE == "cpu" else tensor.to(DEVICE)
    tensor = torch.from_numpy(array)
    return tensor if DEVICE == "cpu" else tensor.to(DEVICE)


def synchronize():
    """Wait for the GPU to finish what was queued (kernels run asynchronously), so a time is the work's."""
    if DEVICE == "cpu":
        return
    if torch is not None:
        torch.cuda.synchronize()
    else:
        import cupy

        cupy.cuda.Device().synchronize()


def convnp_epoch(model, optimizer, loader):
    for images, labels in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(on_device("convnp", images)), on_device("convnp", labels)).backward()
        optimizer.step()
    synchronize()


def torch_epoch(model, optimizer, loader):
    for images, labels in loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(on_device("torch", images)), on_device("torch", labels)).backward()
        optimizer.step()
    synchronize()


def limited(loader, steps):
    """The first ``steps`` batches of each pass over ``loader``."""
    class Limited:
        def __iter__(self):
            for step, batch in enumerate(loader):
                if step == steps:
                    return
                yield batch
    return Limited()


# --- timed sections: each prepares ONE library's work and returns a function that runs one timed ------
# --- repetition and returns {row name: value} ------------------------------------------------------
def training_setup(library, network="lenet"):
    """(epoch function, model, optimizer) of ``library`` for one of NETWORKS."""
    model, optimizer = NETWORKS[network].make(library)
    return (convnp_epoch if library == "convnp" else torch_epoch), model, optimizer


def seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def prepare_lenet(library, quick):
    """Seconds per LeNet-5 training epoch (60,000 MNIST-shaped images, batch 128, Adam, shuffled)."""
    samples = 12_800 if quick else LENET_SAMPLES
    x, y = mnist_shaped(samples)
    loader = data.DataLoader((x, y), BATCH, shuffle=True, seed=0)
    epoch, model, optimizer = training_setup(library)
    return lambda: {"LeNet-5 training epoch (s)": seconds(lambda: epoch(model, optimizer, loader))
                    * LENET_SAMPLES / samples}


def prepare_step(network):
    """The section timing one training step of NETWORKS[network] (random images, shuffled, its optimizer)."""
    spec = NETWORKS[network]

    def prepare(library, quick):
        steps = 4 if quick else spec.steps
        rng = np.random.default_rng(0)
        x = rng.random((spec.batch * steps,) + spec.input_shape, dtype=np.float32)
        y = rng.integers(0, 10, spec.batch * steps)
        loader = data.DataLoader((x, y), spec.batch, shuffle=True, seed=0)
        epoch, model, optimizer = training_setup(library, network)
        return lambda: {spec.row: seconds(lambda: epoch(model, optimizer, loader)) / steps}
    prepare.__doc__ = f"Seconds per training step: {spec.row}, batch {spec.batch}, {spec.optimizer}."
    return prepare


def prepare_inference(library, quick):
    """LeNet-5 inference: seconds per 1,000 images at batch 512 (throughput, lower is better) and
    milliseconds per call at batch 1 (latency)."""
    rng = np.random.default_rng(0)
    big = rng.random((512, 1, 28, 28), dtype=np.float32)
    one = big[:1].copy()
    calls, big_calls = (20, 4) if quick else (200, 20)
    if library == "convnp":
        model = LeNet5().eval().to(DEVICE)

        def run(x, n):
            with convnp.no_grad():
                for _ in range(n):
                    model(on_device(library, x))
            synchronize()
    else:
        model = torch_lenet().eval().to(DEVICE)

        def run(x, n):
            with torch.no_grad():
                for _ in range(n):
                    model(on_device(library, x))
            synchronize()
    return lambda: {"LeNet-5 inference, batch 512 (s per 1k images)":
                    seconds(lambda: run(big, big_calls)) / big_calls / 512 * 1000,
                    "LeNet-5 latency, batch 1 (ms)": seconds(lambda: run(one, calls)) / calls * 1000}


def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_memory(library, repeats, quick):
    """Peak resident memory of a LeNet-5 training epoch (this worker process runs nothing else first).
    'total' is the process peak: interpreter, library, 188 MB of data and training; 'training' is the
    peak minus what the process held just before the first step, the cost of training itself."""
    import resource

    steps = 40 if quick else LENET_SAMPLES // BATCH + 1
    x, y = mnist_shaped(LENET_SAMPLES)
    loader = limited(data.DataLoader((x, y), BATCH, shuffle=True, seed=0), steps)
    epoch, model, optimizer = training_setup(library)
    baseline = rss_mb()
    epoch(model, optimizer, loader)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"LeNet-5 epoch peak memory, total (MB)": peak, "LeNet-5 epoch peak memory, training (MB)": peak - baseline}


def lenet_forward_reference(model, x):
    """LeNet-5's forward pass with the naive loops of convnp.reference (as tutorials write it)."""
    state = model.state_dict()
    h = reference.relu_forward(reference.conv2d_forward(x, state["conv1.weight"], state["conv1.bias"]))
    h = reference.max_pool2d_forward(h, 2)
    h = reference.relu_forward(reference.conv2d_forward(h, state["conv2.weight"], state["conv2.bias"]))
    h = reference.max_pool2d_forward(h, 2).reshape(len(x), -1)
    h = reference.relu_forward(reference.linear_forward(h, state["fc1.weight"], state["fc1.bias"]))
    h = reference.relu_forward(reference.linear_forward(h, state["fc2.weight"], state["fc2.bias"]))
    return reference.linear_forward(h, state["fc3.weight"], state["fc3.bias"])


def measure_naive(library, repeats, quick):
    """The naive loops of convnp.reference against the fast path: LeNet-5 forward on the same batch, in
    convnp's default float32 (the loops cost the same in float64; they are Python-bound).  The two take
    turns, one naive pass then a median of fast ones, so that a change in the machine's load falls on
    both (the fast path alone drifts by tens of percent within minutes on a shared machine)."""
    batch = 8 if quick else BATCH
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    model = LeNet5().eval()
    with convnp.no_grad():
        fast_output = model(convnp.Tensor(x)).data
        warm_up(lambda: model(convnp.Tensor(x)), 0 if quick else WARMUP_SECONDS)
    naive, fast = [], []
    for _ in range(max(1, repeats - 1)):
        naive.append(seconds(lambda: lenet_forward_reference(model, x)))
        with convnp.no_grad():
            fast.append(median_time(lambda: model(convnp.Tensor(x)), 20, warmup=0 if quick else 0.2))
    agree = bool(np.allclose(lenet_forward_reference(model, x), fast_output, rtol=1e-4, atol=1e-5))
    return {"batch": batch, "naive": float(np.median(naive)), "fast": float(np.median(fast)), "agree": agree}


def training_flops(network):
    """FLOPs of the GEMMs of one training step of NETWORKS[network] at its batch: every convolution's and
    linear layer's forward multiply-adds (out numbers x inputs each reads: C/G*kh*kw or in_features),
    times 3 for the two backward GEMMs (dW and dX), less the first layer's dX (its input is the
    image), times 2 FLOPs per multiply-add.  Batch norm, pooling and activations are not counted.  These
    are the direct convolution's FLOPs whatever algorithm runs (the usual convention): a layer computed
    by Winograd F(4x4, 3x3) does a quarter of the multiplications, so its "GFLOP/s" is an effective rate."""
    from math import prod

    from .inspect.summary import summary

    spec = NETWORKS[network]
    model = spec.convnp_model()
    modules = dict(model.named_modules())
    macs = []
    for row in summary(model, spec.input_shape, batch_size=spec.batch).leaf_rows():
        module = modules[row.name]
        if isinstance(module, nn.Conv2d):
            macs.append(prod(row.output_shape) * module.weight.data[0].size)
        elif isinstance(module, nn.Linear):
            macs.append(prod(row.output_shape) * module.in_features)
    return 2 * (3 * sum(macs) - macs[0])


def measure_gflops(library, repeats, quick):
    """Achieved training GFLOP/s of LeNet-5, the VGG-style and the ResNet-20-style nets against this
    machine's float32 GEMM peak: one big square matmul with BLAS on all the threads (convnp's own
    threads off), the most the machine's BLAS gets out of these cores."""
    n = 1024 if quick else 2048
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    threads = convnp.get_num_threads()
    with convnp.num_threads(1, blas=threads):
        peak = 2 * n ** 3 / median_time(lambda: a @ a, 5) / 1e9
    result = {"peak": peak}
    for network in ("lenet", "vgg", "resnet"):
        spec = NETWORKS[network]
        steps = 4 if quick else (40 if network == "lenet" else 8)
        rng = np.random.default_rng(0)
        x = rng.random((spec.batch * steps,) + spec.input_shape, dtype=np.float32)
        loader = data.DataLoader((x, rng.integers(0, 10, len(x))), spec.batch, shuffle=True, seed=0)
        epoch, model, optimizer = training_setup("convnp", network)

        def one_pass(epoch=epoch, model=model, optimizer=optimizer, loader=loader):
            epoch(model, optimizer, loader)
        step = median_time(one_pass, repeats, 0 if quick else WARMUP_SECONDS) / steps
        result[network] = training_flops(network) / step / 1e9
    return result


SCALING_POINTS = [(16, 32), (64, 32), (256, 32), (64, 64), (64, 128)]  # (batch, image side) of the VGG-style step


def measure_scaling_point(library, point, quick):
    """One point of the scaling table, in a fresh worker: the VGG-style step's median seconds (3 steps
    after one, quick: 1 after none) and its peak training memory (peak RSS minus the RSS before the
    first step) at (batch, side)."""
    import resource

    batch, side = point
    steps = 1 if quick else 3
    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, side, side), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    epoch, model, optimizer = training_setup(library, "vgg")
    one_batch = [(x, y)]
    baseline = rss_mb()
    times = [seconds(lambda: epoch(model, optimizer, one_batch)) for _ in range(steps + (0 if quick else 1))]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": float(np.median(times[-steps:])), "memory": peak - baseline}


TIMED = {"lenet": prepare_lenet, "vgg": prepare_step("vgg"), "resnet": prepare_step("resnet"),
         "smallcnn": prepare_step("smallcnn"), "inference": prepare_inference}
ONCE = {"memory": measure_memory, "naive": measure_naive, "gflops": measure_gflops}
CONVNP_ONLY = {"naive", "gflops"}


# --- the parent: worker processes, one per (section, library), then one table ----------------------------
def start_worker(section, library, args, point=None):
    """A fresh process for one section of one library, with the thread counts fixed in its environment
    before NumPy, OpenBLAS or PyTorch start."""
    threads = str(args.threads)
    package_root = str(Path(convnp.__file__).resolve().parents[1])  # so an uninstalled checkout works too
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               CONVNP_NUM_THREADS=threads,
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "convnp.bench", "--worker", library, "--only", section, "--threads", threads,
               "--device", args.device,
               "--repeats", str(args.repeats)] + (["--quick"] if args.quick else []) + (
                   ["--point", f"{point[0]}x{point[1]}"] if point else [])
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty worker can never block on it
    worker = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
                              env=env)
    worker.errors = errors
    return worker


def error_output(worker):
    worker.errors.seek(0)
    return worker.errors.read().decode(errors="replace")


def ask(worker, request, what):
    """Send one request line to a worker and return its JSON answer."""
    if request is not None:
        worker.stdin.write(request + "\n")
        worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        worker.kill()
        raise RuntimeError(f"benchmark worker {what} failed:\n{error_output(worker)}")
    return json.loads(line)


def run_timed(section, libraries, args):
    """Time a section for every library, the repetitions INTERLEAVED (convnp, torch, convnp, torch...).

    Each library runs in its own long-lived worker that has prepared its model and data and warmed up;
    the workers take turns, one repetition at a time, so that a change in the machine's load during the
    run (other processes, the host of a virtual machine) falls on both libraries alike instead of on
    whichever ran second.  Only one worker computes at any time; the pause between turns lets the
    other's idle threads go to sleep."""
    workers = {library: start_worker(section, library, args) for library in libraries}
    try:
        for library, worker in workers.items():  # set up and warm up, one after the other
            ask(worker, "warmup", f"{section}/{library}")
        samples = {library: [] for library in libraries}
        for _ in range(args.repeats):
            for library, worker in workers.items():
                time.sleep(0.2)
                samples[library].append(ask(worker, "run", f"{section}/{library}"))
        for worker in workers.values():
            worker.stdin.write("quit\n")
            worker.stdin.flush()
            worker.wait()
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
    return {library: {name: float(np.median([sample[name] for sample in runs])) for name in runs[0]}
            for library, runs in samples.items()}


def run_once(section, library, args, point=None):
    """Measure a one-shot section (memory, naive loops, GFLOP/s, a scaling point) in a fresh worker."""
    worker = start_worker(section, library, args, point)
    worker.stdin.close()
    line = worker.stdout.readline()
    worker.wait()
    if worker.returncode != 0 or not line:
        raise RuntimeError(f"benchmark worker {section}/{library} failed:\n{error_output(worker)}")
    return json.loads(line)


def serve(section, library, args):
    """The worker's side of ``run_timed``: prepare, then answer 'warmup' and 'run' requests from stdin."""
    once = TIMED[section](library, args.quick)
    for request in sys.stdin:
        request = request.strip()
        if request == "quit":
            return
        if request == "warmup":  # until caches, allocator and the machine have settled
            warm_up(once, 0 if args.quick else WARMUP_SECONDS)
            print(json.dumps({}), flush=True)
        else:
            print(json.dumps(once()), flush=True)


def check_cuda():
    """``--device cuda`` needs CuPy with a GPU for convnp (and PyTorch's CUDA build for its rows)."""
    from .errors import UserError

    if not convnp.cuda.is_available():
        raise UserError("--device cuda: convnp sees no GPU (CuPy is not installed or finds no device): "
                        "pip install 'convnp[cuda]' on a machine with an NVIDIA GPU, or leave --device out")
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    if torch_available() and subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode:
        raise UserError("--device cuda: PyTorch here has no CUDA (a CPU build?): install its CUDA build "
                        "to compare on the GPU, or leave --device out")


def torch_available():
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def run_scaling(libraries, args):
    """{library: {row: value}} for every SCALING_POINTS point, each library and point in a fresh worker
    (peak memory is per process), the libraries taking turns point by point."""
    results = {library: {} for library in libraries}
    for batch, side in SCALING_POINTS:
        for library in libraries:
            r = run_once("scaling", library, args, (batch, side))
            results[library][f"VGG-style step, batch {batch}, {side}x{side} (s)"] = r["seconds"]
            results[library][f"VGG-style step, batch {batch}, {side}x{side}, peak memory (MB)"] = r["memory"]
    return results


def rows_for(section, results):
    if section == "naive":
        r = results["convnp"]
        return [{"name": f"naive loops vs fast path, LeNet-5 forward, batch {r['batch']} (s)", "convnp": r["fast"],
                 "naive": r["naive"], "speedup": r["naive"] / r["fast"], "outputs_agree": r["agree"]}]
    if section == "gflops":
        r = results["convnp"]
        names = {"lenet": "LeNet-5", "vgg": "VGG-style", "resnet": "ResNet-20-style"}
        return [{"name": f"{names[network]} training GFLOP/s vs float32 GEMM peak", "convnp": r[network],
                 "peak": r["peak"], "fraction": r[network] / r["peak"]} for network in names]
    return [{"name": name, "convnp": value, "torch": results.get("torch", {}).get(name),
             "ratio": value / results["torch"][name] if "torch" in results else None}
            for name, value in results["convnp"].items()]


def format_row(row):
    name = f"{row['name']:58}"
    if "speedup" in row:
        return (f"{name} {row['convnp']:10.4g} {'naive ' + format(row['naive'], '.3g'):>12} "
                f"speedup {row['speedup']:,.0f}x (outputs agree: {row['outputs_agree']})")
    if "fraction" in row:
        return f"{name} {row['convnp']:10.2f} {'peak ' + format(row['peak'], '.1f'):>12} fraction {row['fraction']:.1%}"
    if row["torch"] is None:
        return f"{name} {row['convnp']:10.4g} {'skipped':>12}  (PyTorch not installed)"
    return f"{name} {row['convnp']:10.4g} {row['torch']:12.4g} {row['ratio']:7.2f}x"


HEADER = f"{'benchmark':58} {'convnp':>10} {'PyTorch':>12} {'ratio':>8}\n" + "-" * 92


def add_arguments(parser):
    parser.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="threads for each library (default: the CPUs this process may use)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and steps (a smoke run)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed repetitions (default 5, quick 1)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks") / "results" / "latest.json",
                        help="where to write the results as JSON")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where both libraries compute: 'cuda' times convnp on CuPy against PyTorch on CUDA "
                             "(the timed sections only; needs convnp[cuda] and a GPU)")
    parser.add_argument("--worker", choices=["convnp", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--point", type=lambda text: tuple(int(v) for v in text.split("x")), help=argparse.SUPPRESS)


def add_bench_parser(subparsers):
    """The ``convnp bench`` subcommand."""
    parser = subparsers.add_parser("bench", help="speed and memory against PyTorch (LeNet-5, VGG-style)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args):
    global torch, DEVICE
    args.repeats = args.repeats or (1 if args.quick else 5)
    sections = args.only or SECTIONS
    DEVICE = args.device
    if args.worker:
        convnp.keep_freed_memory_for_reuse()  # the worker owns its process (as the convnp command does)
        if args.worker == "convnp":
            convnp.set_num_threads(args.threads)  # convnp's threads, BLAS on one thread
        if args.worker == "torch":
            import torch as torch_module

            torch = torch_module
            torch.set_num_threads(args.threads)
        section = sections[0]
        if section == "scaling":
            print(json.dumps(measure_scaling_point(args.worker, args.point, args.quick)), flush=True)
        elif section in TIMED:
            serve(section, args.worker, args)
        else:
            print(json.dumps(ONCE[section](args.worker, args.repeats, args.quick)), flush=True)
        return 0
    if args.device == "cuda":
        check_cuda()
        skipped = [section for section in sections if section in CPU_ONLY]
        sections = [section for section in sections if section not in CPU_ONLY]
        if skipped:
            print(f"on cuda: {', '.join(skipped)} skipped (CPU measurements)")
    have_torch = torch_available()
    print(f"convnp {convnp.__version__}, NumPy {np.__version__}, "
          f"{'PyTorch available' if have_torch else 'PyTorch not installed: its rows are skipped'}; "
          f"{args.threads} threads for each library, one process per library and section, on {args.device}; "
          f"medians of {args.repeats} after a warm-up\n")
    print(HEADER, flush=True)
    rows = []
    for section in sections:
        libraries = ["convnp"] + (["torch"] if have_torch and section not in CONVNP_ONLY else [])
        if section == "scaling":
            results = run_scaling(libraries, args)
        elif section in TIMED:
            results = run_timed(section, libraries, args)
        else:
            results = {library: run_once(section, library, args) for library in libraries}
        for row in rows_for(section, results):
            rows.append(row)
            print(format_row(row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_write_text

    atomic_write_text(args.json, json.dumps({"threads": args.threads, "repeats": args.repeats, "quick": args.quick,
                                             "numpy": np.__version__, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="convnp bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
