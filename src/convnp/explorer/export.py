"""``convnp explore CHECKPOINT --export DIR``: a static copy of the page that opens from disk, no server.

    export(explorer, "site/explorer")   # -> site/explorer/index.html (one file)

The page's ES modules cannot be loaded from ``file://`` (browsers refuse module scripts without an
origin), so the copy is ONE HTML file: the stylesheet inlined, the modules joined in dependency order
into one classic script (their ``import`` lines dropped, ``export`` keywords removed; every module's
top-level names are distinct, which ``bundle`` checks), and the replies the page would ask the server
for, computed now by the same ``Explorer`` methods, under ``window.CONVNP_STATIC``: the model, the
presets, a forward pass for each bundled test image, the receptive field of every unit, the race for each
patch size, the convolution panel for every preset kernel and input (stride 1, padding 0 to 2) and the
cake presets.  A choice with no precomputed reply says so on the page.
"""
import json
import re
from pathlib import Path

from ..files import atomic_write_text
from .arrays import RequestError
from .server import STATIC

MODULE_ORDER = ("util.js", "conv.js", "maps.js", "field.js", "cake.js", "live.js", "main.js")
PATCHES = (2, 4, 7, 8, 14, 16)
MAX_FORWARDS = 6
MAX_FIELD_REPLIES = 6000
CONV_INPUTS_EXPORTED = ("edge8", "line7", "ticket4", "digit")


def _key(path, body=None):
    if body is None:
        return f"GET {path}"
    return f"POST {path} " + json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def replies(explorer):
    """{"GET /api/model": reply, "POST /api/forward {\"sample\":0}": reply, ...}: what the copy can answer."""
    result = {_key("/api/model"): explorer.model_info(), _key("/api/presets"): explorer.presets(),
              _key("/api/live"): {"active": False}}

    def add(path, body, method):
        try:
            result[_key(path, body)] = method(body)
        except RequestError:
            pass  # an impossible setting: the page shows "no answer in this static copy"

    for index in range(min(len(explorer.samples[1]), MAX_FORWARDS)):
        add("/api/forward", {"sample": index}, explorer.forward)
    _, height, width = explorer.preprocessing["input_size"]
    for patch in PATCHES:
        if patch <= min(height, width):
            add("/api/race", {"patch": patch}, explorer.race)
    shapes = [row.output_shape[1:] for row in explorer.summary.rows if row.is_leaf]
    units = sum(s[1] * s[2] if len(s) == 3 else 1 for s in shapes)
    for layer, shape in enumerate(shapes):
        if len(shape) != 3:
            add("/api/field", {"layer": layer, "unit": [0, 0]}, explorer.field)
            continue
        grid = [(i, j) for i in range(shape[1]) for j in range(shape[2])] if units <= MAX_FIELD_REPLIES else \
            [(shape[1] // 2, shape[2] // 2)]
        for i, j in grid:
            add("/api/field", {"layer": layer, "unit": [i, j]}, explorer.field)
    for kernel in explorer.presets()["kernels"]:
        for name in CONV_INPUTS_EXPORTED:
            for padding in (0, 1, 2):
                add("/api/conv", {"input": name, "kernel": kernel, "stride": 1, "padding": padding}, explorer.conv)
    for preset in explorer.presets()["stacks"].values():
        add("/api/stack", {"input_shape": preset["input_shape"], "blocks": preset["blocks"]}, explorer.stack)
    for layer, row in enumerate(row for row in explorer.summary.rows if row.is_leaf):
        if row.type == "Conv2d":
            add("/api/filter", {"layer": layer}, explorer.layer_filter)
    return result


def bundle():
    """The page's modules as one classic script (see the module docstring)."""
    parts, declared = [], {}
    for name in MODULE_ORDER:
        text = (STATIC / name).read_text(encoding="utf-8")
        text = re.sub(r"^import [^\n]*;\n", "", text, flags=re.MULTILINE)
        text = re.sub(r"^export (?=(async )?function |const |let |class )", "", text, flags=re.MULTILINE)
        if re.search(r"^\s*(import|export)\b", text, flags=re.MULTILINE):
            raise ValueError(f"bundle: {name} has an import/export the bundler does not understand")
        for match in re.finditer(r"^(?:async )?(?:function|const|let|class) (\w+)", text, flags=re.MULTILINE):
            if match.group(1) in declared:
                raise ValueError(f"bundle: {match.group(1)!r} is declared at the top of both "
                                 f"{declared[match.group(1)]} and {name}")
            declared[match.group(1)] = name
        parts.append(f"// --- {name}\n{text}")
    return "(function () {\n\"use strict\";\n" + "\n".join(parts) + "\n})();\n"


def page(explorer):
    """The single-file HTML of the static copy."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    data = json.dumps(replies(explorer), separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    script = bundle().replace("</script", "<\\/script")
    html = html.replace('<link rel="stylesheet" href="/static/style.css">', f"<style>\n{css}</style>")
    html = html.replace('<script type="module" src="/static/main.js"></script>',
                        f"<script>window.CONVNP_STATIC = {data};</script>\n<script>\n{script}</script>")
    return html


def export(explorer, folder):
    """Write ``folder``/index.html atomically -> its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "index.html"
    text = page(explorer)
    atomic_write_text(target, text)
    return target
