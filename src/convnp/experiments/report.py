"""The report an experiment writes: ``report.md`` (setup, tables, figures, conclusion), its PNG figures,
and ``results.json`` (every number behind them), all in one output folder.

    report = Report(ctx, "Stride-2 convolutions versus max pooling", "Does LeNet-5 need its pools?")
    report.setup(data, [("Training", "Adam, one-cycle lr 4e-3, batch 128, 5 epochs")])
    report.table(["model", "parameters"], [["LeNet-5", "44,426"]])
    fig, ax = report.new_figure()
    ...
    report.figure(fig, "accuracy.png", "Test accuracy per epoch")
    report.conclusion("...sentences computed from the numbers...")
    report.results["models"] = {...}
    report.write()            # -> out/report.md, out/results.json

Figures are drawn with matplotlib's Agg backend (files only) at 100 dpi.
"""
import datetime
import json
import math
import platform
import sys
from pathlib import Path

import numpy as np

from .. import __version__
from .common import cpu_description

DPI = 100
MODE_TEXT = {
    "full": "full",
    "quick": "quick (reduced: subsets of the data and fewer epochs; about a minute)",
    "offline": "offline substitute (the small scikit-learn digits set stands in for the real dataset)",
}


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def markdown_table(headers, rows, align=None):
    """A GitHub-flavoured Markdown table; ``align``: a string of 'l'/'r'/'c' per column (default: the
    first column left, the others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(str(h) for h in headers) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def pct(value, digits=2):
    """0.9913 -> '99.13%'."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f}%"


def pp(value, digits=2):
    """A difference of accuracies in percentage points: 0.012 -> '1.20 pp'."""
    return f"{value * 100:.{digits}f} pp"


def ratio(a, b, digits=1):
    """a / b as '3.2x'."""
    return f"{a / b:.{digits}f}x" if b else "n/a"


def thousands(value):
    return f"{int(value):,}"


class Report:
    """Collects the sections of one experiment's report; ``write`` puts it on disk."""

    def __init__(self, ctx, title, question):
        self.ctx = ctx
        self.title = title
        self.question = question
        self.parts = []           # Markdown blocks after the setup section
        self.setup_lines = []
        self.figures = []
        self.conclusion_text = None
        self.started = ctx.started
        self.results = {"experiment": ctx.name, "mode": ctx.mode, "seed": ctx.seed, "threads": ctx.threads}
        ctx.out.mkdir(parents=True, exist_ok=True)

    # --- content --------------------------------------------------------------------------------------
    def setup(self, data, items=()):
        """The setup section: what ran, on what, with which software: enough to rerun it."""
        ctx = self.ctx
        lines = [("Command", f"`{ctx.command}`" if ctx.command else "(called from Python)"),
                 ("Mode", MODE_TEXT[ctx.mode]),
                 ("Data", data.description if data is not None else "none"),
                 ("Seed", f"{ctx.seed} (weights, data order and subsets all follow from it)")]
        lines += list(items)
        threads = "1 (BLAS and convnp's own loops" if ctx.threads == 1 else \
            f"{ctx.threads} of convnp's own, BLAS on one thread"
        lines += [("Threads", f"{threads}; `--threads`); "
                              f"machine: {cpu_description()}"),
                  ("Software", f"convnp {__version__}, NumPy {np.__version__}, Python {platform.python_version()}, "
                               f"{platform.system()} {platform.release()}")]
        self.setup_lines = lines
        self.results["data"] = {"name": data.name, "description": data.description, "substitute": data.substitute,
                                "train_images": len(data.train), "test_images": len(data.test)} if data else None
        self.results["setup"] = {key: value for key, value in lines}
        self.results["software"] = {"convnp": __version__, "numpy": np.__version__,
                                    "python": platform.python_version(), "platform": platform.platform()}

    def section(self, heading, text=None):
        self.parts.append(f"## {heading}")
        if text:
            self.parts.append(text)

    def text(self, paragraph):
        self.parts.append(paragraph)

    def table(self, headers, rows, align=None, caption=None):
        if caption:
            self.parts.append(caption)
        self.parts.append(markdown_table(headers, rows, align))

    def new_figure(self, ncols=1, width=None, height=4.2):
        plt = pyplot()
        fig, axes = plt.subplots(1, ncols, figsize=(width or (6.4 if ncols == 1 else 5.2 * ncols), height))
        return fig, axes

    def figure(self, fig, filename, caption):
        """Save ``fig`` as ``out/filename`` (PNG), close it and embed it with ``caption``."""
        plt = pyplot()
        path = self.ctx.out / filename
        title = fig.get_suptitle() or caption
        fig.tight_layout()
        fig.savefig(path, dpi=DPI, metadata={"Title": title, "Software": "convnp.experiments"})
        plt.close(fig)
        self.figures.append(filename)
        self.parts.append(f"![{caption}]({filename})\n\n*{caption}*")
        return path

    def conclusion(self, text):
        self.conclusion_text = text
        self.results["conclusion"] = text

    # --- output ---------------------------------------------------------------------------------------
    def markdown(self):
        seconds = (datetime.datetime.now() - self.started).total_seconds()
        lines = [f"# {self.title}", "", self.question, ""]
        if self.conclusion_text:
            lines += ["## Conclusion", "", self.conclusion_text, ""]
        lines += ["## Setup", ""]
        lines += [f"- **{key}**: {value}" for key, value in self.setup_lines]
        lines += [f"- **Run**: {self.started:%Y-%m-%d %H:%M}, {seconds:.0f} s in all"]
        for note in self.ctx.notes:
            lines += [f"- **Note**: {note}"]
        lines.append("")
        for part in self.parts:
            lines += [part, ""]
        return "\n".join(lines).rstrip() + "\n"

    def write(self):
        """Write report.md and results.json into the output folder -> the report's path."""
        out = self.ctx.out
        self.results["seconds"] = (datetime.datetime.now() - self.started).total_seconds()
        self.results["figures"] = list(self.figures)
        self.results["notes"] = list(self.ctx.notes)
        report = out / "report.md"
        from ..files import atomic_write_text

        atomic_write_text(report, self.markdown())
        atomic_write_text(out / "results.json", json.dumps(_jsonable(self.results), indent=1) + "\n")
        return report


def python_command():
    """How this process was started, for the report when not run through the CLI."""
    return " ".join([Path(sys.executable).name, *sys.argv])
