"""A small image-folder project for the tests: three classes of shapes, mixed sizes and image modes."""
import numpy as np

MODEL_CODE = '''
from convnp import nn


class ShapeNet(nn.Module):
    """x: (N, C, 16, 16) -> logits (N, num_classes): conv, ReLU, pool, conv, ReLU, pool, linear."""

    def __init__(self, num_classes=3, in_channels=1, width=8):
        super().__init__()
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width * 4 * 4, num_classes)

    input_shape = (1, 16, 16)

    def forward(self, x):
        x = self.pool(self.conv1(x).relu())
        x = self.pool(self.conv2(x).relu())
        return self.fc(x.reshape((x.shape[0], -1)))
'''

CLASSES = ("circle", "cross", "stripes")


def shape(kind, size, rng):
    """A light shape on a dark background, float in [0, 1], (size, size)."""
    ys, xs = np.mgrid[:size, :size] / size
    cy, cx = 0.5 + rng.uniform(-0.08, 0.08, 2)
    if kind == "circle":
        mask = (ys - cy) ** 2 + (xs - cx) ** 2 < 0.09
    elif kind == "cross":
        mask = ((abs(ys - cy) < 0.1) & (abs(xs - cx) < 0.35)) | ((abs(xs - cx) < 0.1) & (abs(ys - cy) < 0.35))
    else:
        mask = (np.floor(xs * 6 + rng.integers(0, 2)) % 2) == 0
    return np.clip(mask * 0.85 + 0.1 + rng.normal(0, 0.03, mask.shape), 0, 1)


def save_as(pixels, path, mode):
    """Save ``pixels`` (H, W) in [0, 1] as ``mode``: L, RGB, 16-bit PNG, palette, RGBA, CMYK JPEG, EXIF-rotated."""
    from PIL import Image

    gray8 = (pixels * 255).round().astype(np.uint8)
    if mode == "I;16":
        Image.fromarray((pixels * 65535).round().astype(np.uint16)).save(path.with_suffix(".png"))
    elif mode == "P":
        Image.fromarray(np.stack([gray8] * 3, -1)).convert("P", palette=Image.Palette.ADAPTIVE).save(
            path.with_suffix(".png"))
    elif mode == "RGBA":
        rgba = np.stack([gray8] * 3 + [np.full_like(gray8, 255)], -1)
        Image.fromarray(rgba).save(path.with_suffix(".png"))
    elif mode == "CMYK":
        Image.fromarray(np.stack([gray8] * 3, -1)).convert("CMYK").save(path.with_suffix(".jpg"), quality=95)
    elif mode == "EXIF":  # stored rotated, with the EXIF orientation that turns it upright (6: rotate 90 CW)
        image = Image.fromarray(np.rot90(gray8, 1).copy())  # 90 CCW; the viewer turns it back
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(path.with_suffix(".jpg"), exif=exif.tobytes(), quality=95)
    else:
        Image.fromarray(gray8).convert(mode).save(path.with_suffix(".png"))


MODES = ("L", "RGB", "I;16", "P", "RGBA", "CMYK", "EXIF")


def make_shape_folder(root, per_class=24, seed=0, splits=False):
    """root/<class>/<images> (or root/train|val|test/<class>/ with ``splits``), sizes 20..40 px, every mode."""
    rng = np.random.default_rng(seed)
    for split, count in ((("train", per_class), ("val", per_class // 3), ("test", per_class // 3)) if splits
                         else ((None, per_class),)):
        for kind in CLASSES:
            folder = (root / split / kind) if split else (root / kind)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                size = int(rng.integers(20, 41))
                save_as(shape(kind, size, rng), folder / f"{kind}{i:03d}", MODES[i % len(MODES)])
    return root
