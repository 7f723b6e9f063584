"""FOOL's feature mode: the ground restores a frozen backbone's features from the latents.

The onboard side is unchanged (the same fool-m encoder and the same bytes), so the mode costs
no bits and no onboard time; only the ground decoder differs. Instead of synthesising pixels
and running the classifier's backbone on them, a small network maps the dequantised latents
``y_hat`` (192 channels at stride 16) straight to the backbone's 128-channel stride-16
features, and the classifier's remaining layers (``head``) run on those. It is trained by
feature distillation: the target is the frozen backbone's output on the original image, plus
a distillation term on the head's class scores; the rate term of FOOL's loss is constant here
because the encoder is frozen.

Training data are latents of 128-px tiles, as the container codes them, stitched on the image's
latent grid, at random qualities in [1, 8] (the variable-rate gains of the shipped model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fool.shared.errors import ModelError
from fool.tasks.classifier import FEATURE_CHANNELS, SceneClassifier, fit, labelled_images, read_rgb, warmup_cosine

TILE = 128  # the container's default tile size: latents are computed per tile, as on board


class _Res(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(ch, ch, 3, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FeatureDecoder(nn.Module):
    """Latents (N, M, h, w) -> backbone features (N, 128, h, w), same grid (stride 16)."""

    def __init__(self, latent_channels: int = 192, width: int = 128, blocks: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.config = {"latent_channels": latent_channels, "width": width, "blocks": blocks, "dropout": dropout}
        self.dropout = dropout  # channel dropout between blocks, in training only
        self.net = nn.Sequential(
            nn.Conv2d(latent_channels, width, 3, 1, 1),
            nn.LeakyReLU(0.1, inplace=True),
            *[_Res(width) for _ in range(blocks)],
            nn.Conv2d(width, FEATURE_CHANNELS, 3, 1, 1),
        )

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.dropout > 0):
            return self.net(y_hat)
        x = y_hat
        for layer in self.net:
            if isinstance(layer, (_Res, nn.Conv2d)) and x is not y_hat:
                x = F.dropout2d(x, self.dropout, training=True)
            x = layer(x)
        return x


@dataclass
class FeatureModeModel:
    """The shipped feature decoder, and the classifier whose backbone it replaces when classifying.

    The checkpoint names the classifier by the SHA-256 of its file instead of holding a copy:
    decoding features needs only the decoder; classifying needs the same classifier file."""

    decoder: FeatureDecoder
    codec_id: str  # the fool model whose latents it reads, name@sha256[:16]
    classifier_sha256: str
    classifier: SceneClassifier | None = None

    @classmethod
    def load(cls, path: Path, classifier_path: Path | None = None) -> FeatureModeModel:
        from fool.shared.latent_codec import file_sha256

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            decoder = FeatureDecoder(**ckpt["config"])
            decoder.load_state_dict(ckpt["state"])
            codec_id, clf_sha = ckpt["codec_id"], ckpt["classifier_sha256"]
        except (OSError, KeyError, RuntimeError, TypeError) as exc:
            raise ModelError(f"{path}: not a feature-mode checkpoint ({exc.__class__.__name__})") from exc
        classifier = None
        if classifier_path is not None:
            if file_sha256(classifier_path) != clf_sha:
                raise ModelError(f"{path} was trained against another classifier than {classifier_path}")
            classifier = SceneClassifier.load(classifier_path)
        return cls(decoder.eval(), codec_id, clf_sha, classifier)

    @torch.no_grad()
    def features(self, y_hat: np.ndarray) -> np.ndarray:
        """Restored backbone features of latents (N, M, h, w) or (M, h, w)."""
        x = torch.from_numpy(np.asarray(y_hat, np.float32))
        squeeze = x.dim() == 3
        out = self.decoder(x[None] if squeeze else x).numpy()
        return out[0] if squeeze else out

    @torch.no_grad()
    def classify(self, y_hat: np.ndarray) -> np.ndarray:
        """Class indices from latents (N, M, h, w): the head runs on restored features."""
        if self.classifier is None:
            raise ModelError("classifying with the feature mode needs its classifier (load with classifier_path)")
        feats = torch.from_numpy(self.features(y_hat))
        return self.classifier.head(feats).argmax(1).numpy()


def stitch_tiles(tiles: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Per-tile latents {(row, col): (M, h, w)} -> one (M, H, W) latent image."""
    rows = max(r for r, _ in tiles) + 1
    cols = max(c for _, c in tiles) + 1
    return np.concatenate([np.concatenate([tiles[(r, c)] for c in range(cols)], axis=2) for r in range(rows)], axis=1)


@torch.no_grad()
def tile_latents(codec, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, means) of unit-range images (N, 3, H, W), analysed per 128-px tile and stitched.

    ``means`` come from the decoded hyper-latent (quantised at its medians), as the ground sees them.
    """
    n, c, h, w = images.shape
    r, k = h // TILE, w // TILE
    tiles = images.reshape(n, c, r, TILE, k, TILE).permute(0, 2, 4, 1, 3, 5).reshape(n * r * k, c, TILE, TILE)
    y, z = codec.analyse(tiles)
    medians = codec.entropy_bottleneck._get_medians()
    z_hat = torch.round(z - medians) + medians
    _, means = codec.hyper_params(z_hat)

    def back(t: torch.Tensor) -> torch.Tensor:
        m, th, tw = t.shape[1:]
        return t.reshape(n, r, k, m, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(n, m, r * th, k * tw)

    return back(y), back(means)


def quantise(codec, y: torch.Tensor, means: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """y_hat at per-sample qualities, as the container's dequantisation gives it."""
    gain, inv = codec.gains(quality)
    return (torch.round((y - means) * gain) + means * gain) * inv


@dataclass
class FeatureModeOptions:
    steps: int = 2000
    batch: int = 32
    lr: float = 1e-3
    kd_weight: float = 0.5
    variants: int = 2  # 1: the originals; 2: and their mirror images; 8: all rotations and mirrors
    jitter: bool = False  # random gain and offset per variant other than the originals, as the classifier's training
    dropout: float = 0.0
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    #: a feature-mode checkpoint to start from (one made for the model this one was fine-tuned
    #: from reads latents of the same layout); a path string, so checkpoints load weights-only
    init: str | None = None


def train_feature_mode(
    train_dir: Path,
    classifier_path: Path,
    codec_name: str,
    out: Path,
    options: FeatureModeOptions | None = None,
    log: Callable[[str], None] = print,
    val_dir: Path | None = None,
) -> dict:
    """Distil the classifier's backbone into a decoder of ``codec_name``'s latents; save to ``out``.

    With ``val_dir`` (one folder per class), top-1 accuracy on its latents at the lowest and highest
    quality is logged every 500 steps; it does not choose the checkpoint (the last step ships)."""
    from fool.shared import zoo
    from fool.shared.latent_codec import file_sha256
    from fool.shared.nn.codec import FoolCodec

    opts = options or FeatureModeOptions()
    if opts.variants not in (1, 2, 8):
        raise ModelError(f"variants must be 1, 2 or 8, not {opts.variants}")
    if not 0.0 <= opts.dropout < 1.0:
        raise ModelError(f"dropout must be in [0, 1), not {opts.dropout}")
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    rng = np.random.default_rng(opts.seed)
    files = zoo.find(codec_name)
    codec = FoolCodec.load(files.weights).eval()
    codec_id = f"{codec_name}@{file_sha256(files.weights)[:16]}"
    classifier = SceneClassifier.load(classifier_path)
    for p in list(codec.parameters()) + list(classifier.parameters()):
        p.requires_grad_(False)
    paths, labels, classes = labelled_images(train_dir)
    if classes != classifier.classes:
        raise ModelError(f"{train_dir}: classes differ from the classifier's")
    start = FeatureModeModel.load(Path(opts.init), classifier_path) if opts.init is not None else None
    if start is not None and start.decoder.config["latent_channels"] != codec.config.m:
        raise ModelError(
            f"{opts.init} reads {start.decoder.config['latent_channels']} latent channels, not {codec.config.m}"
        )
    t0 = time.perf_counter()
    ys, ms, feats, logits = [], [], [], []
    images = np.stack([fit(read_rgb(p)) for p in paths])
    for v in range(opts.variants):  # the latents of rotated and mirrored images multiply the data
        for i in range(0, len(images), 16):
            x = torch.from_numpy(images[i : i + 16].astype(np.float32)).permute(0, 3, 1, 2)
            x = torch.rot90(x.flip(3) if v % 2 else x, v // 2, (2, 3))
            if opts.jitter and v > 0:
                gain = torch.from_numpy(rng.uniform(0.85, 1.15, (len(x), 1, 1, 1))).float()
                offset = torch.from_numpy(rng.uniform(-15.0, 15.0, (len(x), 1, 1, 1))).float()
                x = torch.round(x * gain + offset).clamp(0, 255)
            y, m = tile_latents(codec, x / 255)
            with torch.no_grad():
                f = classifier.features(x)
                logits.append(classifier.head(f))
            ys.append(y)
            ms.append(m)
            feats.append(f)
    y_all, m_all, f_all, l_all = torch.cat(ys), torch.cat(ms), torch.cat(feats), torch.cat(logits)
    lab_all = torch.from_numpy(np.tile(labels, opts.variants))
    f_scale = f_all.pow(2).mean().sqrt()
    log(f"latents and targets of {len(y_all)} images in {time.perf_counter() - t0:.0f} s")
    val = None
    if val_dir is not None:
        vpaths, vlabels, vclasses = labelled_images(val_dir)
        if vclasses != classes:
            raise ModelError(f"{val_dir}: classes differ from the classifier's")
        vx = torch.from_numpy(np.stack([fit(read_rgb(p)) for p in vpaths]).astype(np.float32)).permute(0, 3, 1, 2)
        vy, vm = zip(*(tile_latents(codec, vx[i : i + 16] / 255) for i in range(0, len(vx), 16)), strict=True)
        val = (torch.cat(vy), torch.cat(vm), torch.from_numpy(vlabels))
    if start is not None:
        decoder = start.decoder.train()
        log(f"decoder initialised from {opts.init} (made for {start.codec_id})")
    else:
        decoder = FeatureDecoder(y_all.shape[1], dropout=opts.dropout)
    optim = torch.optim.AdamW(decoder.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = warmup_cosine(optim, opts.steps)
    history: list[dict] = []
    acc_sum, loss_sum, seen = 0.0, 0.0, 0
    for step in range(1, opts.steps + 1):
        idx = torch.from_numpy(rng.integers(0, len(y_all), opts.batch))
        q = torch.from_numpy(rng.uniform(1.0, float(codec.levels), opts.batch)).float()
        y_hat = quantise(codec, y_all[idx], m_all[idx], q)
        pred = decoder(y_hat)
        out_logits = classifier.head(pred)
        feat_loss = F.mse_loss(pred, f_all[idx]) / f_scale**2
        kd = F.kl_div(F.log_softmax(out_logits / 2, 1), F.softmax(l_all[idx] / 2, 1), reduction="batchmean") * 4
        loss = feat_loss + opts.kd_weight * kd
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        loss_sum += float(loss.detach())
        acc_sum += float((out_logits.argmax(1) == lab_all[idx]).float().mean())
        seen += 1
        if step % 100 == 0 or step == opts.steps:
            row = {"step": step, "loss": loss_sum / seen, "train_accuracy": acc_sum / seen}
            row["seconds"] = time.perf_counter() - t0
            if val is not None and (step % 500 == 0 or step == opts.steps):
                row.update(_val_accuracy(decoder, classifier, codec, val))
            history.append(row)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            acc_sum, loss_sum, seen = 0.0, 0.0, 0
            _save(decoder, classifier, file_sha256(classifier_path), codec_id, opts, history, out)
    return history[-1]


@torch.no_grad()
def _val_accuracy(decoder: FeatureDecoder, classifier: SceneClassifier, codec, val) -> dict[str, float]:
    y, m, labels = val
    decoder.eval()
    out = {}
    for q in (1, codec.levels):
        y_hat = quantise(codec, y, m, torch.full((len(y),), float(q)))
        pred = torch.cat([classifier.head(decoder(y_hat[i : i + 64])).argmax(1) for i in range(0, len(y), 64)])
        out[f"val_accuracy_q{q}"] = float((pred == labels).float().mean())
    decoder.train()
    return out


def _save(
    decoder: FeatureDecoder,
    classifier: SceneClassifier,
    classifier_sha256: str,
    codec_id: str,
    opts,
    history,
    out: Path,
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    torch.save(
        {
            "config": decoder.config,
            "state": {k: v.detach().clone() for k, v in decoder.state_dict().items()},
            "classes": classifier.classes,
            "classifier_sha256": classifier_sha256,
            "codec_id": codec_id,
            "options": asdict(opts),
            "history": history,
        },
        tmp,
    )
    tmp.replace(out)
