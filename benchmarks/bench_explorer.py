"""Latency of the explorer's forward route for LeNet-5: POST /api/forward over HTTP on the loopback, the
whole round trip (JSON parse, traced forward pass of every layer, base64 of every map, JSON reply).

    python benchmarks/bench_explorer.py [--requests 200] [--drawing]

Prints the median, 10th and 90th percentile in ms (the issue's target: a median under 20 ms), and the
same for the Explorer method called directly (no HTTP).  ``--drawing`` sends a 280x280 canvas, which
also runs convnp predict's preprocessing.
"""
import argparse
import base64
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import convnp  # noqa: E402
from convnp.explorer import Explorer, start  # noqa: E402
from convnp.recipes import LAYOUTS  # noqa: E402

PREPROCESSING = {"dataset": "mnist", "mean": [0.1307], "std": [0.3081], "input_size": [1, 28, 28],
                 "classes": [str(k) for k in range(10)], "layout": dict(LAYOUTS["mnist"])}


def percentiles(times):
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[len(ms) // 10], ms[(9 * len(ms)) // 10]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--drawing", action="store_true", help="send a drawn 280x280 canvas instead of a test image")
    args = parser.parse_args(argv)

    convnp.manual_seed(0)
    rng = np.random.default_rng(0)
    explorer = Explorer(convnp.models.LeNet5(), {"preprocessing": PREPROCESSING},
                        samples=(rng.random((4, 1, 28, 28), dtype=np.float32), np.arange(4)))
    if args.drawing:
        canvas = np.zeros((280, 280), np.uint8)
        canvas[60:220, 130:150] = 255
        body = {"drawing": {"dtype": "uint8", "shape": [280, 280], "data": base64.b64encode(canvas.tobytes()).decode()}}
    else:
        body = {"sample": 1}
    data = json.dumps(body).encode()
    server = start(explorer)
    url = server.url + "api/forward"
    try:
        def one():
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request) as response:
                return len(response.read())

        size = one()
        for _ in range(10):  # warm up
            one()
        http_times, direct_times = [], []
        for _ in range(args.requests):
            t = time.perf_counter()
            one()
            http_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            json.dumps(explorer.forward(body))
            direct_times.append(time.perf_counter() - t)
    finally:
        server.shutdown()
        server.server_close()
    what = "a drawn 280x280 canvas" if args.drawing else "a test image"
    print(f"POST /api/forward, LeNet-5, {what}, {args.requests} requests, reply {size / 1e3:.0f} kB")
    for label, times in (("HTTP round trip", http_times), ("Explorer.forward + json", direct_times)):
        median, p10, p90 = percentiles(times)
        print(f"  {label:<24} median {median:6.2f} ms   p10 {p10:6.2f} ms   p90 {p90:6.2f} ms")
    median = percentiles(http_times)[0]
    print(f"  target: median under 20 ms: {'met' if median < 20 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
