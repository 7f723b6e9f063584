"""A small scene classifier for UC Merced, trained by the project on CPU.

It is the downstream task that tells whether decoded imagery (or decoded features) still carries
what a detector needs. The network is a plain residual CNN split in two at stride 16: `backbone`
(stem and the first two stages) gives a 128-channel feature map on the same grid as FOOL's
latents, and `head` (the last stage, pooling and the linear layer) turns it into class scores.
FOOL's feature mode restores the backbone's output on the ground and runs only `head` on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fool.shared.errors import InputError, ModelError

IMAGE_SUFFIXES = (".webp", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
FEATURE_CHANNELS = 128
FEATURE_STRIDE = 16
IMAGE_SIZE = 256


class _Block(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 strided) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class SceneClassifier(nn.Module):
    """Residual CNN, about 0.3 G multiply–adds per 224² image; `backbone` ends at stride 16."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, classes: list[str]) -> None:
        super().__init__()
        self.classes = list(classes)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 2, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            _Block(64, 96, 2),
            _Block(96, FEATURE_CHANNELS, 2),
            _Block(FEATURE_CHANNELS, FEATURE_CHANNELS, 1),
        )
        self.head = nn.Sequential(
            _Block(FEATURE_CHANNELS, 256, 2),
            _Block(256, 256, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(256, len(self.classes)),
        )
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of uint8-scaled images (N, 3, H, W) in 0..255."""
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @classmethod
    def load(cls, path: Path) -> SceneClassifier:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            model = cls(ckpt["classes"])
            model.load_state_dict(ckpt["state"])
        except (OSError, KeyError, RuntimeError) as exc:
            raise ModelError(f"{path}: not a scene classifier checkpoint ({exc.__class__.__name__})") from exc
        return model.eval()


@dataclass
class ClassifierOptions:
    epochs: int = 40
    batch: int = 32
    crop: int = 224
    lr: float = 2e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    seed: int = 0
    threads: int = 2


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 (grey repeated, alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from exc
    return arr


def labelled_images(
    root: Path, classes: list[str] | None = None, limit: int | None = None
) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files under DIR/<class>/ with integer labels; `limit` keeps the first N per class."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of class sub-folders")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = classes if classes is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise InputError(f"{root}: class folders the classifier does not know: {', '.join(unknown)}")
    paths: list[Path] = []
    labels: list[int] = []
    for idx, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files = files[:limit] if limit else files
        paths += files
        labels += [idx] * len(files)
    if not paths:
        raise InputError(f"{root}: no images in class sub-folders")
    return paths, np.asarray(labels, dtype=np.int64), classes


def _augment(batch: np.ndarray, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """Random crop, rot90, flip and a mild brightness/contrast change of uint8 images (N, H, W, 3)."""
    out = np.empty((len(batch), crop, crop, 3), dtype=np.float32)
    for i, img in enumerate(batch):
        h, w = img.shape[:2]
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        tile = np.rot90(img[y : y + crop, x : x + crop], int(rng.integers(4)))
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
        out[i] = np.clip(tile.astype(np.float32) * gain + offset, 0, 255)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def fit(img: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A (H, W, 3) uint8 image resized to size × size (a few UC Merced images are 247–253 px)."""
    if img.shape[:2] == (size, size):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


def to_tensor(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    arr = np.stack([fit(im) for im in images]).astype(np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def predict(model: SceneClassifier, images: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """Class indices for uint8 RGB images (all the same size)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        out.append(model(to_tensor(images[i : i + batch])).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def train_classifier(
    train_dir: Path,
    out: Path,
    options: ClassifierOptions | None = None,
    val_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train on DIR/<class>/ images and save `{classes, state, options, history}` to `out`."""
    opts = options or ClassifierOptions()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    rng = np.random.default_rng(opts.seed)
    paths, labels, classes = labelled_images(train_dir)
    images = np.stack([fit(read_rgb(p)) for p in paths])
    val = None
    if val_dir is not None:
        vpaths, vlabels, _ = labelled_images(val_dir, classes)
        val = ([read_rgb(p) for p in vpaths], vlabels)
    model = SceneClassifier(classes)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    steps_per_epoch = math.ceil(len(images) / opts.batch)
    total = steps_per_epoch * opts.epochs
    # one-cycle (cosine warm-up over 10 % of the steps, then cosine decay), as the shipped weights
    # were trained; runs too short for its two phases (tests) warm up linearly instead
    if total >= 30:
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            optim, max_lr=opts.lr, total_steps=total, pct_start=0.1
        )
    else:
        sched = warmup_cosine(optim, total)
    history = []
    start = time.perf_counter()
    for epoch in range(opts.epochs):
        model.train()
        order = rng.permutation(len(images))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), opts.batch):
            idx = order[i : i + opts.batch]
            x = _augment(images[idx], opts.crop, rng)
            y = torch.from_numpy(labels[idx])
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=opts.label_smoothing)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        row = {
            "epoch": epoch + 1,
            "loss": loss_sum / len(images),
            "train_accuracy": correct / len(images),
            "seconds": time.perf_counter() - start,
        }
        if val is not None and ((epoch + 1) % 5 == 0 or epoch + 1 == opts.epochs):
            row["val_accuracy"] = float((predict(model, val[0]) == val[1]).mean())
        history.append(row)
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        _save(model, opts, history, out)
    return history[-1]


def warmup_cosine(optim: torch.optim.Optimizer, total: int, warmup: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first ``warmup`` share of steps, then a cosine decay to zero."""
    ramp = max(1, int(total * warmup))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - ramp) / max(1, total - ramp))))

    return torch.optim.lr_scheduler.LambdaLR(optim, factor)


def _save(model: SceneClassifier, opts: ClassifierOptions, history: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"classes": model.classes, "state": state, "options": asdict(opts), "history": history}, tmp)
    tmp.replace(out)
