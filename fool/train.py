"""`fool train`: rate-distortion training of the variable-rate codec on team imagery.

Runs unattended for hours on a CPU: checkpoints (model, both optimisers, step, RNG) are
written atomically every few minutes and picked up again by the next run, and every
logged step is appended to a CSV so curves survive restarts. SIGTERM or Ctrl-C (SIGINT) ends a
run at the next step boundary with a final checkpoint, so stopping a run never loses work.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fool.shared.errors import FoolError, ModelError

IMAGE_SUFFIXES = {".webp", ".tif", ".tiff", ".png", ".jpg", ".jp2"}


@dataclass
class TrainOptions:
    data: list[Path]
    out: Path
    exclude: tuple[str, ...] = ()
    steps: int = 100_000
    max_minutes: float | None = None
    batch: int = 8
    crop: int = 128
    #: further crop sizes; steps cycle through (crop, *more_crops) and a step at size c takes
    #: batch x (crop / c)^2 crops, so every step sees about as many pixels. Tiles of 256 px put
    #: hyper-latents off the tile border, which 128-px crops (a 2x2 hyper-latent) never show.
    more_crops: tuple[int, ...] = ()
    lr: float = 3e-4
    lr_min: float = 3e-5
    warmup: int = 500  # steps of linear LR warm-up at the start of every run (fresh Adam moments)
    gray_prob: float = 0.15
    deep_prob: float = 0.3  # share of crops from >8-bit single bands (pan, Sentinel-2); 0 = pooled with grey
    clip: float = 1.0
    autocast: bool | None = None  # bf16 on the transforms; None: only where the CPU computes bf16 natively
    device: str = "cpu"
    checkpoint_minutes: float = 5.0
    log_every: int = 50
    seed: int = 0
    init: Path | None = None  # start from shipped weights (e.g. models/fool-m.pt) when no checkpoint exists
    dec_blocks: int | None = None  # deepen the synthesis of a new or initialised model (None: keep)
    latent: int | None = None  # latent channels M of a new model, or widen an initialised one (None: keep)
    latent_ramp: int = 3000  # steps over which widened channels' bits enter the loss (see shared.nn.grow)
    enc_width: int | None = None  # hidden channels of the analysis: narrow an initialised model (None: keep)
    #: "all"; "encoder": only the onboard analysis and hyper-analysis learn, so the ground
    #: decoder (synthesis, hyper-synthesis, entropy models, gains) stays the --init model's;
    #: "synthesis": only the ground synthesis learns, so every byte the --init model codes
    #: stays the same and the result is another ground decoder for its containers
    train_only: str = "all"
    #: (width, residual blocks) of a new half-resolution synthesis stage for an --init model
    #: (it starts from random weights; the other stages keep theirs)
    last_stage: tuple[int, int] | None = None
    #: quality levels added below an initialised model's lowest (λ continues its geometric
    #: spacing; the gains start extrapolated), so the rate range reaches lower without retraining
    low_levels: int = 0
    #: a scene classifier checkpoint: the distortion adds ``feature_weight`` × the normalised
    #: squared error of its frozen backbone's features of the reconstruction (FeatureDistortion)
    feature_loss: Path | None = None
    feature_weight: float = 0.0


class CropSource:
    """Random crops of RGB images and of single bands (replicated to 3 channels).

    Single bands teach the one RGB model to code panchromatic and multispectral bands,
    which the band planner feeds it as grey triples. High-bit-depth bands get their own
    pool: a handful of 11/12-bit scenes would otherwise drown among thousands of 8-bit
    channels and the model would never learn their smooth, low-contrast statistics.
    """

    def __init__(
        self, files: list[Path], crop: int, gray_prob: float, rng: np.random.Generator, deep_prob: float = 0.0
    ):
        import rasterio

        from fool.shared.bands import INTEGER_DTYPES, BandRange, bits_for_max, integer_range

        self.rgb: list[np.ndarray] = []
        self.gray: list[np.ndarray] = []
        self.deep: list[np.ndarray] = []
        for f in files:
            with rasterio.open(f) as ds:
                arr = ds.read()
                dtype = ds.dtypes[0]
            bits = bits_for_max(arr.max(), dtype) if dtype in INTEGER_DTYPES else None
            deep = bits is not None and bits > 8
            if bits == 8:
                data = integer_range(8).to_unit(arr)
            else:  # as the tiler does: deeper and float bands are stretched by their own min/max
                data = np.stack([BandRange(float(b.min()), float(b.max())).to_unit(b) for b in arr])
            if min(data.shape[1:]) < crop:  # the smallest crop size; larger ones re-draw (sample)
                continue
            bands = [data[i : i + 1] for i in range(data.shape[0])]
            if data.shape[0] >= 3 and dtype == "uint8":
                self.rgb.append(data[:3])
            (self.deep if deep and deep_prob > 0 else self.gray).extend(bands)
        if not self.rgb and not self.gray and not self.deep:
            raise FoolError(f"no usable training images (>= {crop} px) in {len(files)} files")
        self.crop, self.gray_prob, self.deep_prob, self.rng = crop, gray_prob, deep_prob, rng

    def _pool(self) -> list[np.ndarray]:
        r = self.rng.random()
        if self.deep and r < self.deep_prob:
            return self.deep
        r -= self.deep_prob if self.deep else 0.0
        if self.gray and (r < self.gray_prob or not self.rgb):
            return self.gray
        return self.rgb or self.gray or self.deep

    def sample(self, crop: int | None = None) -> np.ndarray:
        size = self.crop if crop is None else crop
        for _ in range(1000):
            pool = self._pool()
            img = pool[self.rng.integers(len(pool))]
            _, h, w = img.shape
            if min(h, w) >= size:
                break
        else:
            raise FoolError(f"no training image is at least {size} px on both sides")
        y, x = self.rng.integers(h - size + 1), self.rng.integers(w - size + 1)
        c = img[:, y : y + size, x : x + size]
        c = np.rot90(c, self.rng.integers(4), axes=(1, 2))
        if self.rng.random() < 0.5:
            c = c[:, :, ::-1]
        if c.shape[0] == 1:
            c = np.repeat(c, 3, axis=0)
        return np.ascontiguousarray(c)

    def batch(self, n: int, crop: int | None = None) -> np.ndarray:
        return np.stack([self.sample(crop) for _ in range(n)])


def crop_at(step: int, opts: TrainOptions) -> tuple[int, int]:
    """(crop size, batch) of a step: sizes cycle, the batch shrinks with the crop's area."""
    sizes = (opts.crop, *opts.more_crops)
    size = sizes[step % len(sizes)]
    return size, max(1, round(opts.batch * (opts.crop / size) ** 2))


def find_images(roots: list[Path], exclude: tuple[str, ...] = ()) -> list[Path]:
    files = []
    for root in roots:
        cands = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files += [p for p in cands if p.suffix.lower() in IMAGE_SUFFIXES and not any(e in str(p) for e in exclude)]
    if not files:
        raise FoolError(f"no images found under {', '.join(map(str, roots))}")
    return files


def _lr_at(step: int, opts: TrainOptions) -> float:
    """Cosine decay from ``lr`` to ``lr_min``, after a linear warm-up. The warm-up matters for
    ``--init`` runs: Adam's first updates are about ``lr`` in size whatever the gradient, which
    knocked a trained model 0.4 dB back at quality 8 before it recovered (session 4)."""
    frac = min(step / max(opts.steps, 1), 1.0)
    cosine = opts.lr_min + 0.5 * (opts.lr - opts.lr_min) * (1 + math.cos(math.pi * frac))
    return cosine * min(1.0, (step + 1) / opts.warmup) if opts.warmup > 0 else cosine


@contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """Collect SIGTERM/SIGINT while training; the loop stops at the next step and checkpoints.
    A second signal interrupts at once (the last periodic checkpoint stays).

    Only the main thread may install handlers; elsewhere (e.g. a library caller's worker thread)
    the process keeps its default behaviour.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def request(signum: int, _frame) -> None:
        if received:  # asked twice: the operator does not want to wait for the step
            raise KeyboardInterrupt
        received.append(signum)

    previous = {s: signal.signal(s, request) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates it: on a 2-core AMD EPYC with AVX2 only, a bf16 step took 49 s
    against 2 s in fp32, where a CPU with native bf16 had run twice as fast as fp32.
    """
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


@dataclass
class Run:
    """What a training run carries from step to step and into its checkpoint."""

    model: Any
    opt: Any
    aux_opt: Any
    main_params: list
    config: Any
    step: int = 0
    elapsed_before: float = 0.0
    lineage: list = dataclasses.field(default_factory=list)
    ramp: dict = dataclasses.field(default_factory=dict)  # which channels are new, and how long they ride free

    def save(self, path: Path, seconds: float) -> None:
        _save(
            path, self.model, self.opt, self.aux_opt, self.step, self.elapsed_before + seconds, self.lineage, self.ramp
        )


TRAIN_ONLY = ("all", "encoder", "synthesis")
#: which parameters learn under each --train-only (besides the entropy bottleneck's quantiles)
_LEARNS = {"encoder": ("g_a.", "h_a."), "synthesis": ("g_s.",)}


def _new_run(config, device, lr: float, train_only: str = "all") -> Run:
    import torch

    from fool.shared.nn.codec import FoolCodec

    if train_only not in TRAIN_ONLY:
        raise ModelError(f"--train-only must be one of {', '.join(TRAIN_ONLY)}, got {train_only!r}")
    model = FoolCodec(config).to(device)
    if train_only != "all":
        for n, p in model.named_parameters():
            # the entropy bottleneck's quantiles (its aux loss) only track its frozen density's
            # range; under "synthesis" they are frozen too, as the released tables must not move
            aux = n.endswith(".quantiles") and train_only == "encoder"
            p.requires_grad_(n.startswith(_LEARNS[train_only]) or aux)
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    aux_opt = torch.optim.Adam(aux_params or [torch.zeros(1, requires_grad=True)], lr=1e-3)
    run = Run(model, torch.optim.Adam(main_params, lr=lr), aux_opt, main_params, config)
    run.ramp = {"channels_from": config.m, "steps": 0}
    return run


def _start_run(opts: TrainOptions, ckpt_path: Path, source: CropSource, device, log) -> Run:
    """Resume the run in ``opts.out``, or start one: fresh, or from ``--init`` weights (grown by
    ``--dec-blocks`` or ``--latent`` where asked)."""
    import torch

    from fool.shared.nn.codec import CodecConfig, FoolCodec

    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        run = _new_run(CodecConfig.from_dict(state["config"]), device, opts.lr, opts.train_only)
        run.model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["opt"])
        run.aux_opt.load_state_dict(state["aux_opt"])
        run.step, run.elapsed_before = state["step"], state.get("train_seconds", 0.0)
        run.lineage = state.get("lineage", [])
        run.ramp = state.get("rate_ramp", run.ramp)
        log(f"resumed from {ckpt_path} at step {run.step}")
        return run
    init_model = FoolCodec.load(opts.init) if opts.init is not None else None
    config = init_model.config if init_model is not None else CodecConfig()
    if opts.dec_blocks is not None:
        config = dataclasses.replace(config, dec_blocks=opts.dec_blocks)
    if opts.latent is not None:
        config = dataclasses.replace(config, m=opts.latent)
    if opts.enc_width is not None:
        config = dataclasses.replace(config, n_enc=opts.enc_width, n_hyper=config.n_hyper or config.n_enc)
    if opts.last_stage is not None:
        if init_model is None or opts.train_only != "synthesis":
            raise ModelError("--last-stage replaces a stage of an --init model's synthesis: use --train-only synthesis")
        config = dataclasses.replace(config, last_stage=(int(opts.last_stage[0]), int(opts.last_stage[1])))
    if opts.low_levels:
        if init_model is None:
            raise ModelError("--low-levels needs --init: it extends that model's quality range")
        if opts.train_only != "all" or config.m != init_model.config.m or config.n_enc != init_model.config.n_enc:
            raise ModelError("add quality levels in a run of its own (no --latent, --enc-width or --train-only)")
        config = dataclasses.replace(config, lambdas=lower_lambdas(config.lambdas, opts.low_levels))
    run = _new_run(config, device, opts.lr, opts.train_only)
    if init_model is None or opts.init is None:
        if opts.train_only != "all":
            raise ModelError(f"--train-only {opts.train_only} needs --init: it keeps the rest of that model")
        return run
    if config.n_enc != init_model.config.n_enc:
        if config.m != init_model.config.m or config.dec_blocks != init_model.config.dec_blocks:
            raise ModelError("narrow the analysis in a run of its own (no --latent or --dec-blocks)")
        from fool.shared.nn.grow import narrow_analysis

        narrow_analysis(run.model, init_model.to(device), torch.from_numpy(source.batch(32)).to(device))
        run.lineage = init_lineage(Path(opts.init))
        log(f"initialised from {opts.init}, analysis narrowed {init_model.config.n_enc} -> {config.n_enc} channels")
    elif config.m != init_model.config.m:
        _widen_from(run, init_model, opts, source, device)
        log(f"initialised from {opts.init}, latent widened {init_model.config.m} -> {config.m} channels")
    else:
        _load_grown(run, init_model, opts.init, opts.low_levels)
        before = sum(r["steps"] for r in run.lineage)
        log(f"initialised from {opts.init} (fresh optimiser state; {before} steps before)")
    return run


def _widen_from(run: Run, init_model, opts: TrainOptions, source: CropSource, device) -> None:
    import torch

    from fool.shared.nn.grow import widen_latent

    if run.config.dec_blocks != init_model.config.dec_blocks:
        raise ModelError("widen the latent and deepen the synthesis in separate runs")
    widen_latent(run.model, init_model.to(device), torch.from_numpy(source.batch(32)).to(device), seed=opts.seed)
    run.ramp = {"channels_from": init_model.config.m, "steps": opts.latent_ramp}
    run.lineage = init_lineage(Path(opts.init)) if opts.init is not None else []


def lower_lambdas(lambdas: tuple[float, ...], n: int) -> tuple[float, ...]:
    """``n`` more λ below ``lambdas[0]``, at the ratio of its two lowest levels."""
    ratio = lambdas[0] / lambdas[1]
    return tuple(lambdas[0] * ratio ** (n - k) for k in range(n)) + tuple(lambdas)


def extrapolate_gains(log_gain, n: int):
    """Gain vectors (levels × M, log domain) with ``n`` rows prepended on the line through the
    two lowest: the start that quality extrapolation below 1 measured (docs/experiments.md)."""
    import torch

    step = log_gain[1] - log_gain[0]
    below = torch.stack([log_gain[0] - (n - k) * step for k in range(n)])
    return torch.cat([below, log_gain])


def _load_grown(run: Run, init_model, init: Path, low_levels: int = 0) -> None:
    """The --init weights into a model with as many or more synthesis blocks (new ones are the
    identity) and ``low_levels`` more quality levels below its lowest."""
    from fool.shared.nn.codec import deepen_state

    weights = init_model.state_dict()
    if low_levels:
        for key in ("log_gain", "log_inv_gain"):
            weights[key] = extrapolate_gains(weights[key], low_levels)
    if run.config.dec_blocks < init_model.config.dec_blocks:
        raise ModelError(
            f"cannot change the synthesis depth from {init_model.config.dec_blocks} to {run.config.dec_blocks} blocks"
        )
    if init_model.config.dec_blocks == 0 and init_model.config.last_stage is None:  # the flat layout
        weights = deepen_state(weights, run.config.dec_blocks or int(run.config.last_stage is not None))
    replaced = run.config.last_stage != init_model.config.last_stage
    if replaced:  # the half-resolution stage and the output layer are new
        weights = {k: v for k, v in weights.items() if not k.startswith(("g_s.2.", "g_s.3."))}
    missing, unexpected = run.model.load_state_dict(weights, strict=False)
    # new blocks start as the identity; CDF tables are rebuilt at release
    grown = (".body.", "_cdf", "_offset", "_length")
    fresh = ("g_s.2.", "g_s.3.") if replaced else ()
    new = [k for k in missing if not any(g in k for g in grown) and not k.startswith(fresh)]
    if new or unexpected:
        raise ModelError(f"{init} does not fit the model: missing {new[:3]}, unexpected {unexpected[:3]}")
    run.lineage = init_lineage(init)


class FeatureDistortion:
    """Squared error of a frozen backbone's features of the reconstruction against those of the
    original, per sample, divided by the mean square of the original's features on the first
    batch (a fixed scale, so the term's weight means the same from step to step; a resumed
    run measures it again on its own first batch).

    This is FOOL's distillation loss on shallow backbone features: the codec learns to keep what
    a detector's early layers respond to, not only what pixel MSE weighs."""

    def __init__(self, classifier: Path, weight: float, device) -> None:
        from fool.tasks.classifier import SceneClassifier

        if weight <= 0:
            raise ModelError(f"--feature-weight must be positive with --feature-loss, got {weight}")
        self.classifier = SceneClassifier.load(classifier).to(device)
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.weight = weight
        self.scale: float | None = None

    def __call__(self, x_hat, x, autocast: bool):
        import torch

        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            ref = self.classifier.features(x * 255).float()
        if self.scale is None:
            self.scale = float(ref.pow(2).mean().clamp_min(1e-6))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = self.classifier.features(x_hat.clamp(0, 1) * 255).float()
        return (out - ref).pow(2).flatten(1).mean(1) / self.scale


def _step(
    run: Run, opts: TrainOptions, x, level, lambdas, autocast: bool, device, features: FeatureDistortion | None = None
) -> dict[str, float]:
    """One optimiser step of rate + lambda * distortion at a random level per sample."""
    import torch

    from fool.shared.nn.grow import rate_weights

    out = run.model(x, (level + 1).float(), autocast=autocast)
    n_pix = x.shape[2] * x.shape[3]
    y_bits = out["likelihoods"]["y"].log2().neg()
    z_bits = out["likelihoods"]["z"].log2().neg().flatten(1).sum(1)
    bpp = (y_bits.flatten(1).sum(1) + z_bits) / n_pix  # logged: every bit the coder will spend
    paid = bpp
    if run.ramp["channels_from"] < run.config.m and run.step < run.ramp["steps"]:
        w = rate_weights(run.config.m, run.ramp["channels_from"], run.step, run.ramp["steps"]).to(device)
        paid = ((y_bits * w[None, :, None, None]).flatten(1).sum(1) + z_bits) / n_pix
    mse = ((out["x_hat"] - x) ** 2).flatten(1).mean(1)
    distortion = 255**2 * mse
    feature_error = None
    if features is not None:
        feature_error = features(out["x_hat"], x, autocast)
        distortion = distortion + features.weight * feature_error
    loss = (lambdas[level] * distortion + paid).mean()
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.main_params, opts.clip)
    run.opt.step()
    aux = run.model.aux_loss()
    if aux.requires_grad:
        run.aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        run.aux_opt.step()
    run.step += 1
    row = {"loss": loss.item(), "bpp": bpp.mean().item(), "mse": mse.mean().item(), "aux": aux.item()}
    if feature_error is not None:
        row["feature_error"] = feature_error.mean().item()
    return row


class _Log:
    """Means over the last ``every`` steps, one CSV row each."""

    COLUMNS = ["step", "seconds", "lr", "loss", "bpp", "mse", "psnr", "aux", "level", "feature_error"]

    def __init__(self, fh, new: bool) -> None:
        self.fh, self.writer = fh, csv.writer(fh)
        if new:
            self.writer.writerow(self.COLUMNS)
        self.acc: dict[str, float] = {}
        self.n = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.n += 1

    def flush(self, step: int, seconds: float, lr: float) -> None:
        n, m = self.n, self.acc["mse"] / self.n
        self.writer.writerow(
            [
                step,
                round(seconds, 1),
                f"{lr:.3g}",
                self.acc["loss"] / n,
                self.acc["bpp"] / n,
                m,
                10 * math.log10(1 / max(m, 1e-12)),
                self.acc["aux"] / n,
                "all",
                self.acc["feature_error"] / n if "feature_error" in self.acc else "",
            ]
        )
        self.fh.flush()
        self.acc, self.n = {}, 0


def train(opts: TrainOptions, log=print) -> Path:
    """Train (or resume) a codec; returns the checkpoint path."""
    import torch

    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed + int(time.time()))
    opts.out.mkdir(parents=True, exist_ok=True)
    ckpt_path, csv_path = opts.out / "checkpoint.pt", opts.out / "train_log.csv"
    device = torch.device(opts.device)
    files = find_images(opts.data, opts.exclude)
    source = CropSource(files, opts.crop, opts.gray_prob, rng, opts.deep_prob)
    log(
        f"training on {len(files)} files: {len(source.rgb)} RGB images, {len(source.gray)} 8-bit single bands, "
        f"{len(source.deep)} high-bit-depth single bands"
    )
    run = _start_run(opts, ckpt_path, source, device, log)
    autocast = device.type == "cpu" and (native_bf16() if opts.autocast is None else opts.autocast)
    log(f"transforms in {'bf16 (autocast)' if autocast else 'fp32'} on {device}")
    features = None
    if opts.feature_loss is not None:
        features = FeatureDistortion(opts.feature_loss, opts.feature_weight, device)
        log(f"feature distortion: {opts.feature_loss} backbone, weight {opts.feature_weight}")
    lambdas = torch.tensor(run.config.lambdas, device=device)
    levels = len(run.config.lambdas)
    start = last_ckpt = time.time()
    new_log = not csv_path.exists()
    with open(csv_path, "a", newline="") as fh, _stop_requests() as stop:
        logger = _Log(fh, new_log)
        while run.step < opts.steps:
            if stop or (opts.max_minutes is not None and time.time() - start > opts.max_minutes * 60):
                break
            lr = _lr_at(run.step, opts)
            for g in run.opt.param_groups:
                g["lr"] = lr
            size, n = crop_at(run.step, opts)
            x = torch.from_numpy(source.batch(n, size)).to(device)
            level = torch.randint(0, levels, (n,), device=device)
            logger.add(_step(run, opts, x, level, lambdas, autocast, device, features))
            if run.step % opts.log_every == 0:
                logger.flush(run.step, run.elapsed_before + time.time() - start, lr)
            if time.time() - last_ckpt > opts.checkpoint_minutes * 60:
                run.save(ckpt_path, time.time() - start)
                last_ckpt = time.time()
    run.save(ckpt_path, time.time() - start)
    why = f" on {signal.Signals(stop[0]).name}" if stop else ""
    log(f"stopped{why} at step {run.step}; checkpoint {ckpt_path}")
    return ckpt_path


def init_lineage(path: Path) -> list[dict]:
    """The runs that trained the weights a new run starts from, so a model card can state total steps.

    A checkpoint carries its own lineage plus its run; shipped weights carry theirs in the
    tables' metadata (``<name>.npz`` beside ``<name>.pt``).
    """
    import json

    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    if "step" in state:
        run = {"run": Path(path).parent.name, "steps": state["step"], "train_seconds": state.get("train_seconds", 0.0)}
        return state.get("lineage", []) + [run]
    tables = Path(path).with_suffix(".npz")
    if not tables.exists():
        return []
    meta = json.loads(bytes(np.load(tables)["meta"]).decode())
    own = {"run": meta.get("name", Path(path).stem), "steps": meta.get("step") or 0}
    own["train_seconds"] = meta.get("train_seconds") or 0.0
    return meta.get("lineage", []) + [own]


def _save(
    path: Path,
    model,
    opt,
    aux_opt,
    step: int,
    seconds: float,
    lineage: list[dict] | None = None,
    rate_ramp: dict | None = None,
) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "aux_opt": aux_opt.state_dict(),
            "config": model.config.to_dict(),
            "step": step,
            "train_seconds": seconds,
            "lineage": lineage or [],
            "rate_ramp": rate_ramp,
        },
        tmp,
    )
    os.replace(tmp, path)


def plot_log(csv_path: Path, out: Path) -> None:
    """Training curves (loss, bpp, PSNR against step) from a run's CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise FoolError(f"{csv_path} has no logged steps yet")
    step = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key in zip(axes, ("loss", "bpp", "psnr"), strict=True):
        ax.plot(step, [float(r[key]) for r in rows], lw=0.8)
        ax.set_xlabel("step")
        ax.set_title(key + (" (mean over λ levels)" if key != "loss" else ""))
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
