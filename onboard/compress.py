"""Compress a scene into a ``.fool`` container: tile, analyse, entropy-code, stream out."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
from fool.onboard import modes as modelib
from fool.onboard.priority import CloudyTiles, FlatTiles, RegionOfInterest, TileRule, rank_tiles
from fool.onboard.rate_control import PlannedTile, allocate
from fool.onboard.scene import SceneReader, TileData
from fool.shared import zoo
from fool.shared.errors import InputError, ModelError, OutputError
from fool.shared.format import FLAG_MASK, MODE_INTRA, MODE_SKIPPED, write_container
from fool.shared.geometry import ALIGN, DEFAULT_TILE, coded_latents
from fool.shared.latent_codec import QUALITY_STEP, LatentCodec, quality_code
from fool.shared.runtime import single_blas_thread
from fool.shared.scene import MAX_HALO, SceneHeader, pack_tile


@dataclass
class CompressReport:
    path: Path
    bytes: int
    pixels: int
    bands: int
    tiles_coded: int
    tiles_skipped: int
    seconds: float
    timings: dict = field(default_factory=dict)
    payload_bytes: int = 0  # tile payloads only, without header, table and footer
    table_bytes: int = 0  # the tile table
    modes: dict[str, int] = field(default_factory=dict)  # coded tiles per mode: learned, j2k, jpegls

    @property
    def bpp(self) -> float:
        """Bits per pixel position, all bands together."""
        return 8 * self.bytes / max(self.pixels, 1)

    @property
    def megapixels_per_second(self) -> float:
        return self.pixels / 1e6 / max(self.seconds, 1e-9)


def _ceil_align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def group_inputs(data: TileData, reader: SceneReader) -> list[np.ndarray]:
    """Raw tile values -> one (3, H, W) unit-range array per band group, padded for the codec.

    With a halo the array is the tile plus its neighbours' pixels; the halo's near sides are
    multiples of ALIGN, so the tile's latents are an exact crop of the halo's (see analyse_tile).
    """
    tile = data.tile
    ph, pw = tile.padded_shape
    ring = data.halo
    values, valid = (ring.values, ring.valid) if ring else (data.values, data.valid)
    unit = np.empty(values.shape, np.float32)
    for i, rng in enumerate(reader.ranges):
        band = rng.to_unit(values[i])
        if valid is not None:
            # invalid pixels cost bits for nothing: replace them by the mean of the valid ones
            band[~valid] = band[valid].mean() if valid.any() else 0.0
        unit[i] = np.nan_to_num(band, nan=0.0)
    top, left, bottom, right = (ring.top, ring.left, ring.bottom, ring.right) if ring else (0, 0, 0, 0)
    rows, cols = top + ph + _ceil_align(bottom), left + pw + _ceil_align(right)
    unit = np.pad(unit, ((0, 0), (0, rows - unit.shape[1]), (0, cols - unit.shape[2])), mode="edge")
    return [unit[[b - 1 for b in g]] if len(g) == 3 else np.repeat(unit[[g[0] - 1]], 3, axis=0) for g in reader.groups]


def analyse_tile(analysis, data: TileData, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> the tile's latents (y, z). With a halo, y is cropped out of the widened analysis and z
    is recomputed from that crop: a hyper-latent that also summarised the neighbours would
    describe the tile's scales worse (uint16 scenes, previous weights: +3.5 % BD-rate against
    plain tiles, +1.8 % with z from the crop)."""
    y, z = analysis(inputs)
    if data.halo is None:
        return y, z
    ph, pw = data.tile.padded_shape
    t, lf = data.halo.top // 16, data.halo.left // 16
    y = np.ascontiguousarray(y[..., t : t + ph // 16, lf : lf + pw // 16])
    return y, analysis.hyper(y)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_runtime(runtime: str, model: str, flight_dir: Path | None, threads: int | None):
    """-> (analysis callable, LatentCodec, model name)."""
    if runtime == "onnx":
        from fool.onboard.analysis import OnnxAnalysis

        if flight_dir is None:
            flight_dir = zoo.find(model).onnx_dir
            if not (flight_dir / "manifest.json").exists():
                raise ModelError(
                    f"the ONNX runtime needs a flight export of {model}: run "
                    f"`fool export-onnx --model {model} -o DIR` and pass --flight DIR"
                )
        analysis = OnnxAnalysis(flight_dir, threads)
        codec = LatentCodec.load(Path(flight_dir) / analysis.manifest["tables"])
        return analysis, codec
    if runtime == "torch":
        from fool.onboard.analysis import TorchAnalysis

        files = zoo.find(model)
        return TorchAnalysis(files, threads), LatentCodec.load(files.tables)
    raise InputError(f"unknown runtime {runtime!r}; use 'torch' or 'onnx'")


@dataclass(frozen=True)
class CompressOptions:
    """How to code a scene; the CLI's defaults are these."""

    model: str | None = None  # None: the shipped model for the scene's dtype (shared.zoo.model_for)
    #: None: the model's default (shared.zoo.default_quality: its level trained at the default λ)
    quality: float | None = None
    tile_size: int = DEFAULT_TILE
    bands: list[int] | None = None
    band_groups: str | None = None
    runtime: str = "torch"
    flight_dir: Path | None = None
    threads: int | None = None  # intra-op threads of the runtime [ONNX Runtime with workers: 1]
    #: threads coding batches side by side [the usable cores with ONNX Runtime, 1 with PyTorch,
    #: whose own intra-op threads already take every core]
    workers: int | None = None
    halo: int = 0  # inter-tile context, pixels (a multiple of 64)
    value_range: str = "scene"
    budget: int | None = None  # bytes of the whole container; quality then becomes the search's result
    bpp: float | None = None  # the budget as bits per pixel position (all bands), the whole file
    roi: Path | None = None  # GeoJSON region of interest (onboard.priority.RegionOfInterest)
    roi_crs: str = "lonlat"
    roi_outside: str = "lowest"
    flat: str | None = None  # "lowest" or "skip" for near-constant tiles (onboard.priority.FlatTiles)
    cloudy: str | None = None  # "lowest" or "skip" for tiles the brightness test calls cloudy
    #: "learned": every tile with the learned codec; "auto": per tile, the learned codec or
    #: JPEG 2000, whichever has the lower rate-distortion cost (onboard.modes)
    modes: str = "learned"
    max_error: int | None = None  # every tile JPEG-LS: no sample more than this many raw units off
    #: JPEG 2000 wavelet of ``auto`` and qualities 9..12: 97 (fewer bytes, float decode: +-1 grey
    #: level across OpenJPEG builds/CPUs) or 53 (integer-exact decode); see shared.intra
    intra_wavelet: int = modelib.intra.DEFAULT_WAVELET

    def check(self) -> None:
        """Refuse bad options before any model is loaded or any file is touched."""
        q = self.quality
        if q is not None and (isinstance(q, bool) or not isinstance(q, int | float) or not q >= 1.0):
            raise InputError(f"quality {q} is below 1, the fewest bits")
        if self.modes not in modelib.MODE_CHOICES:
            raise InputError(f"unknown modes {self.modes!r}; use {' or '.join(modelib.MODE_CHOICES)}")
        if self.max_error is not None and (
            isinstance(self.max_error, bool)
            or not isinstance(self.max_error, int)
            or not 0 <= self.max_error <= modelib.intra.MAX_NEAR
        ):
            raise InputError(f"max error must be an integer 0..{modelib.intra.MAX_NEAR}, got {self.max_error}")
        if self.intra_wavelet not in modelib.intra.WAVELETS:
            raise InputError(f"intra wavelet must be 53 or 97, got {self.intra_wavelet!r}")
        if self.halo < 0 or self.halo % ALIGN or self.halo > MAX_HALO:
            raise InputError(f"halo must be 0 or a multiple of {ALIGN} up to {MAX_HALO} pixels, got {self.halo}")
        for name in ("threads", "workers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.runtime not in ("torch", "onnx"):
            raise InputError(f"unknown runtime {self.runtime!r}; use 'torch' or 'onnx'")
        if self.budget is not None and self.budget <= 0:
            raise InputError(f"budget must be a positive number of bytes, got {self.budget}")
        if self.bpp is not None and (self.bpp <= 0 or self.budget is not None):
            raise InputError("give either --budget BYTES or --bpp X (a positive rate), not both")

    def for_model(self, codec: LatentCodec) -> CompressOptions:
        """These options with the model's default quality filled in; refuses a quality the
        model does not offer, and intra modes with the options they do not combine with yet."""
        opts = self if self.quality is not None else replace(self, quality=zoo.default_quality(codec.lambdas))
        opts.check_model(codec.name, codec.levels)
        return opts

    def check_model(self, name: str, levels: int) -> None:
        """Refuse a quality the model (of ``levels`` learned levels) does not offer, and intra
        modes with the options they do not combine with yet."""
        top = modelib.max_quality(levels)
        if self.quality is None:
            raise ValueError("no quality: fill in the model's default with CompressOptions.for_model")
        if self.quality > top:
            targets = ", ".join(f"{v:g}" for v in modelib.UPPER_TARGETS)
            raise InputError(
                f"quality {self.quality:g} is outside 1..{top:g} for {name} (1 = fewest bits, {levels} = the learned "
                f"codec's best, {levels + 1}..{top:g} JPEG 2000 at PSNR targets {targets} dB)"
            )
        if self.intra(levels) and (
            self.budget is not None or self.bpp is not None or self.roi or self.flat or self.cloudy
        ):
            raise InputError(
                f"--modes auto, --max-error and qualities above {levels} do not combine with --budget, --bpp, --roi, "
                "--flat or --cloudy yet"
            )

    def intra(self, levels: int) -> bool:
        """Whether any tile may be coded with a classical intra mode (onboard.modes) by a model
        of ``levels`` learned levels."""
        return self.modes != "learned" or self.max_error is not None or (self.quality or 0.0) > levels

    def budget_bytes(self, pixels: int) -> int | None:
        return int(self.bpp * pixels / 8) if self.bpp is not None else self.budget

    def rules(self, reader: SceneReader) -> list[TileRule]:
        """The tile-value rules these options turn on (onboard.priority; none by default)."""
        rules: list[TileRule] = []
        if self.roi is not None:
            rules.append(RegionOfInterest(self.roi, reader, self.roi_crs, self.roi_outside))
        if self.flat:
            rules.append(FlatTiles(self.flat))
        if self.cloudy:
            rules.append(CloudyTiles(self.cloudy))
        return rules


def check_output(src: Path, dst: Path) -> None:
    """The output must be writable and must not be the input: checked before the slow work."""
    dst = Path(dst)
    if dst.exists() and dst.resolve() == Path(src).resolve():
        raise InputError(f"output {dst} is the input scene; choose another -o")
    if dst.is_dir():
        raise OutputError(f"output {dst} is a directory; give a file name")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {dst}: folder {parent} is not writable")


def compress_scene(
    src: Path,
    dst: Path,
    options: CompressOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine=None,
    **fields,
) -> CompressReport:
    """Compress ``src`` into ``dst``; ``dst`` appears only when the whole scene is written.

    ``options`` (or its fields as keywords) say how; ``engine`` is a preloaded
    ``load_runtime(...)`` result, for callers that code many scenes. With a halo each tile is
    analysed with that much of its neighbours and the ground synthesises it with its
    neighbours' latents; every tile still decodes alone (see ground.decode).
    """
    opts = replace(options or CompressOptions(), **fields)
    opts.check()
    check_output(src, dst)
    start = time.perf_counter()
    with SceneReader(src, opts.tile_size, opts.bands, opts.band_groups, opts.value_range) as reader:
        workers = opts.workers or (usable_cores() if opts.runtime == "onnx" else 1)
        threads = opts.threads or (1 if opts.runtime == "onnx" and workers > 1 else None)
        analysis, codec = engine or load_runtime(
            opts.runtime, opts.model or zoo.model_for(reader.dtype), opts.flight_dir, threads
        )
        opts = opts.for_model(codec)
        quality = opts.quality or zoo.default_quality(codec.lambdas)
        upper = quality > codec.levels
        code = int(round(quality * QUALITY_STEP)) if upper else quality_code(quality, codec.levels)
        header = SceneHeader.from_dict(
            reader.profile_header()
            | {"model_name": codec.name, "model_sha256": codec.weights_sha256[:16], "halo": opts.halo}
        )
        rules = opts.rules(reader)
        coder = (
            intra_coder(opts, quality, analysis, codec, reader, code)
            if opts.intra(codec.levels)
            else TileCoder(analysis, codec, reader, code)
        )
        coder.workers = workers
        with write_container(Path(dst), header) as out:
            budget = opts.budget_bytes(reader.ds.width * reader.ds.height)
            if budget is None and not rules:
                coder.run(out, opts.halo, progress)
            else:
                PlannedCoder(coder, rules).run(out, opts.halo, budget, progress)
        size = Path(dst).stat().st_size
        pixels = reader.ds.width * reader.ds.height
        return CompressReport(
            Path(dst),
            size,
            pixels,
            len(reader.bands),
            coder.coded,
            coder.skipped,
            time.perf_counter() - start,
            coder.timings,
            sum(e.length for e in out.entries),
            out.table_bytes,
            coder.modes,
        )


def intra_coder(
    opts: CompressOptions, quality: float, analysis, codec: LatentCodec, reader: SceneReader, code: int
) -> IntraCoder:
    """The coder for the intra options at ``quality`` (the options' own, or the model's default);
    refuses a scene whose samples the classical modes cannot code."""
    upper = quality > codec.levels
    if (upper or opts.max_error is not None) and not modelib.intra_dtype_ok(reader.dtype):
        what = f"--max-error {opts.max_error}" if opts.max_error is not None else f"quality {quality:g}"
        raise InputError(
            f"{what} needs uint8 or uint16 samples (JPEG-LS / JPEG 2000 of the raw values); this scene is "
            f"{reader.dtype}, for which no maximum error can be guaranteed"
        )
    synthesis = None
    if opts.modes == "auto" and not upper and opts.max_error is None:
        synthesis = modelib.load_synthesis(zoo.find(codec.name).weights)
    chooser = modelib.ModeChooser(
        codec,
        [list(g) for g in reader.groups],
        reader.ranges,
        reader.dtype,
        reader.mask_kind,
        reader.nodata,
        code,
        opts.modes,
        modelib.upper_target(quality, codec.levels) if upper else None,
        opts.max_error,
        synthesis,
        opts.intra_wavelet,
    )
    return IntraCoder(analysis, codec, reader, code, chooser)


T = TypeVar("T")


def _batches(items: Iterable[T], size: Callable[[T], int], cap: int) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` of total ``size`` up to ``cap`` (at least one item each)."""
    run: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if run and total + n > cap:
            yield run
            run, total = [], 0
        run.append(item)
        total += n
    if run:
        yield run


class _Prefetch:
    """Runs an iterator in a thread, at most ``depth`` items ahead: reading the next tiles
    (GDAL releases the GIL) overlaps the analysis and the coding of the previous ones."""

    _END = object()

    def __init__(self, items, depth: int = 2) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(iter(items),), daemon=True, name="fool-read")
        self._thread.start()

    def _fill(self, items) -> None:
        try:
            for item in items:
                if not self._put((True, item)):
                    return
            self._put((True, self._END))
        except BaseException as exc:  # re-raised in the consumer, with its own traceback
            self._put((False, exc))

    def _put(self, entry) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            ok, item = self._queue.get()
            if not ok:
                raise item
            if item is self._END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class TileCoder:
    """A three-stage pipeline: a reader thread reads tiles ahead, a worker thread analyses a
    batch of them (the runtime releases the GIL) while the main thread entropy-codes and
    writes the previous batch. A few small batches are in flight, so memory stays flat.

    The integer hyper-synthesis of a batch's tiles and band groups runs as one batch (its
    values do not depend on the batch). The runtime sees one tile per call (all its band
    groups), as before: larger calls did not pay on ORT's CPU provider and cost peak memory;
    :attr:`analysis_pixels` allows them for a runtime whose outputs do not depend on the batch
    (``analysis.batch_invariant``; ORT's convolutions work image by image, checked bit for bit).
    """

    #: tiles per batch, and most input pixels (band groups x height x width) in one
    batch_tiles = 8
    batch_pixels = 8 * 2 * 128 * 128
    #: most input pixels per runtime call for a batch-invariant runtime (one tile is always allowed)
    analysis_pixels = 2 * 128 * 128

    def __init__(self, analysis, codec: LatentCodec, reader: SceneReader, code: int) -> None:
        self.analysis, self.codec, self.reader, self.code = analysis, codec, reader, code
        self.coded = self.skipped = 0
        #: seconds per stage, summed over the worker threads
        self.timings = {"analysis_s": 0.0, "entropy_s": 0.0}
        self._timing_lock = threading.Lock()
        #: threads that analyse and entropy-code batches side by side (see :meth:`run`)
        self.workers = 1

    def _spent(self, stage: str, since: float) -> None:
        with self._timing_lock:
            self.timings[stage] += time.perf_counter() - since

    @property
    def modes(self) -> dict[str, int]:
        """Coded tiles per mode: all learned here."""
        return {modelib.LEARNED: self.coded}

    def analyse(self, data: TileData):
        return self.analyse_batch([data])[0]

    def analyse_batch(self, batch: list[TileData]) -> list[tuple[TileData, tuple | None]]:
        """-> (tile, latents or None when no pixel is valid) per tile, in order: tiles of equal
        input shape share a runtime call when the runtime allows (``analysis.batch_invariant``)."""
        t0 = time.perf_counter()
        out: list = [(data, None) for data in batch]
        shapes: dict[tuple, list[tuple[int, np.ndarray]]] = {}
        for i, data in enumerate(batch):
            if data.valid is not None and not data.valid.any():
                continue
            x = np.stack(group_inputs(data, self.reader))
            shapes.setdefault(x.shape, []).append((i, x))
        together = getattr(self.analysis, "batch_invariant", False)
        for shape, items in shapes.items():
            g = shape[0]
            step = max(1, self.analysis_pixels // (g * shape[2] * shape[3])) if together else 1
            for s in range(0, len(items), step):
                part = items[s : s + step]
                if len(part) == 1:
                    i, x = part[0]
                    out[i] = batch[i], analyse_tile(self.analysis, batch[i], x)
                    continue
                y, z = self.analysis(np.concatenate([x for _, x in part]))
                for j, (i, x) in enumerate(part):
                    whole = _Fixed((y[j * g : (j + 1) * g], z[j * g : (j + 1) * g]), self.analysis)
                    out[i] = batch[i], analyse_tile(whole, batch[i], x)
        self._spent("analysis_s", t0)
        return out

    def encode(self, data: TileData, latents: tuple[np.ndarray, np.ndarray], code: int) -> bytes:
        """One tile's payload at quality ``code``: mask, then one stream for all band groups."""
        return self.encode_many([(data, latents)], code)[0]

    def encode_many(self, tiles: list[tuple[TileData, tuple[np.ndarray, np.ndarray]]], code: int) -> list[bytes]:
        """:meth:`encode` of many tiles, with one batched integer hyper-synthesis."""
        groups = len(self.reader.groups)
        jobs: list[tuple[list[tuple[np.ndarray, np.ndarray]], int, np.ndarray | None]] = []
        for data, (y, z) in tiles:
            tile = data.tile
            sent = coded_latents(tile.padded_shape, (tile.height, tile.width), data.valid)
            jobs.append(([(y[g], z[g]) for g in range(groups)], code, sent))
        streams = self.codec.encode_tiles(jobs)
        return [pack_tile(stream, data.valid) for stream, (data, _) in zip(streams, tiles, strict=True)]

    def code_batch(self, batch: list[TileData]) -> tuple[list[tuple[TileData, tuple | None]], list[bytes] | None]:
        """A worker's share of :meth:`run`: the batch's latents and its coded tiles' payloads
        (None when :meth:`write_batch` codes them, as :class:`IntraCoder`'s does)."""
        results = self.analyse_batch(batch)
        coded = [(data, latents) for data, latents in results if latents is not None]
        t1 = time.perf_counter()
        payloads = self.encode_many(coded, self.code) if coded else []
        self._spent("entropy_s", t1)
        return results, payloads

    def write_batch(self, out, coded_batch, progress, done: int, total: int) -> int:
        """Adds a :meth:`code_batch` result to the container, in the batch's tile order."""
        results, ready = coded_batch
        payloads = iter(ready)
        for data, latents in results:
            if latents is None:  # every pixel invalid: not stored, decoded as nodata
                self.skipped += 1
            else:
                flags = FLAG_MASK if data.valid is not None else 0
                out.add_tile(data.tile.row, data.tile.col, next(payloads), self.code, flags)
                self.coded += 1
            done += 1
            if progress:
                progress(done, total)
        return done

    def tile_batches(self, halo: int):
        """The scene's tiles in raster order, in runs of up to :attr:`batch_tiles` tiles and
        :attr:`batch_pixels` input pixels."""
        groups = len(self.reader.groups)
        n = max(1, self.batch_tiles)
        cap = max(1, self.batch_pixels)

        def size(data: TileData) -> int:
            ph, pw = data.tile.padded_shape
            return max(groups * ph * pw, -(-cap // n))

        return _batches(self.reader.tiles(halo), size, cap)

    def run(self, out, halo: int, progress: Callable[[int, int], None] | None) -> None:
        """Codes the scene batch by batch: a reader thread prefetches tiles, :attr:`workers`
        threads each analyse a batch and entropy-code it (the runtime, BLAS and GDAL release
        the GIL, so they share the cores), and this thread writes the payloads in tile order.
        Every tile's payload depends on that tile alone, so the file is the same for any
        number of workers."""
        total, done = len(self.reader.grid), 0
        workers = max(1, self.workers)
        batches = _Prefetch(self.tile_batches(halo), depth=workers + 1)
        try:
            with single_blas_thread(), ThreadPoolExecutor(workers) as pool:
                pending: deque = deque()
                for batch in batches:
                    pending.append(pool.submit(self.code_batch, batch))
                    if len(pending) > workers:
                        done = self.write_batch(out, pending.popleft().result(), progress, done, total)
                while pending:
                    done = self.write_batch(out, pending.popleft().result(), progress, done, total)
        finally:
            batches.close()


class IntraCoder(TileCoder):
    """:class:`TileCoder` with a per-tile mode (onboard.modes): without a learned candidate
    (upper qualities, max error) tiles skip the analysis; with ``auto`` each tile's learned
    payload competes with JPEG 2000 ones."""

    _NO_LATENTS = ()

    def __init__(self, analysis, codec: LatentCodec, reader: SceneReader, code: int, chooser) -> None:
        super().__init__(analysis, codec, reader, code)
        self.chooser = chooser
        self.counts: Counter[str] = Counter()
        self.timings["intra_s"] = 0.0

    @property
    def modes(self) -> dict[str, int]:
        return dict(self.counts)

    def analyse_batch(self, batch: list[TileData]) -> list[tuple[TileData, tuple | None]]:
        if self.chooser.needs_latents:
            return super().analyse_batch(batch)
        return [(d, None if d.valid is not None and not d.valid.any() else self._NO_LATENTS) for d in batch]

    def code_batch(self, batch: list[TileData]) -> tuple[list[tuple[TileData, tuple | None]], list[bytes] | None]:
        """Only the analysis in the worker: the mode choice and the intra coders run in :meth:`write_batch`."""
        return self.analyse_batch(batch), None

    def write_batch(self, out, coded_batch, progress, done: int, total: int) -> int:
        results, _ = coded_batch
        coded = [r for r in results if r[1] is not None]
        learned: Iterator[bytes] = iter(())
        if coded and self.chooser.needs_latents:
            t1 = time.perf_counter()
            learned = iter(self.encode_many(coded, self.code))
            self._spent("entropy_s", t1)
        for data, latents in results:
            if latents is None:
                self.skipped += 1
            else:
                t2 = time.perf_counter()
                tile = data.tile
                if self.chooser.needs_latents:
                    own = next(learned)
                    if self.chooser.mode == "auto":
                        sent = coded_latents(tile.padded_shape, (tile.height, tile.width), data.valid)
                        payload, kind = self.chooser.choose(data.values, data.valid, own, tile.padded_shape, sent)
                    else:
                        payload, kind = own, modelib.LEARNED
                else:
                    payload, kind = self.chooser.fixed(data.values, data.valid)
                self.timings["intra_s"] += time.perf_counter() - t2
                flags = FLAG_MASK if data.valid is not None else 0
                if kind == modelib.LEARNED:
                    out.add_tile(tile.row, tile.col, payload, self.code, flags)
                else:
                    out.add_tile(tile.row, tile.col, pack_tile(payload, data.valid), self.code, flags, MODE_INTRA)
                self.counts[kind] += 1
                self.coded += 1
            done += 1
            if progress:
                progress(done, total)
        return done


class _Fixed:
    """An analysis whose first call returns given latents (a batch's share), for analyse_tile."""

    def __init__(self, latents, analysis) -> None:
        self.latents, self.hyper = latents, analysis.hyper

    def __call__(self, _inputs):
        return self.latents


class PlannedCoder:
    """Codes a scene whose tile qualities depend on the whole scene (a byte budget, tile
    values): every tile is analysed first, its latents kept in a temporary folder beside the
    output (memory stays flat), then :func:`onboard.rate_control.allocate` picks the quality
    codes and the tiles are written in raster order."""

    def __init__(self, coder: TileCoder, rules: list[TileRule]) -> None:
        self.coder, self.rules = coder, rules

    def run(self, out, halo: int, budget: int | None, progress: Callable[[int, int], None] | None) -> None:
        import tempfile

        coder = self.coder
        total = len(coder.reader.grid)
        with tempfile.TemporaryDirectory(prefix=".fool-plan-", dir=out.path.parent) as spill:
            planned, stored = self._analyse_all(Path(spill), halo)
            t1 = time.perf_counter()

            def encode(i: int, code: int) -> bytes:
                data, path = stored[i]
                latents = np.load(path)
                return coder.encode(data, (latents["y"], latents["z"]), code)

            highest = coder.codec.levels * QUALITY_STEP
            # each tile is coded at many qualities: keep its integer hyper-synthesis (up to ~100 MB)
            coder.codec.memo_size = min(len(planned) * len(coder.reader.groups), 512)
            try:
                alloc = allocate(
                    planned, encode, len(out.header_bytes), budget, coder.code, highest=highest, cols=out.cols
                )
            finally:
                coder.codec.memo_size = 0
                coder.codec._hyper_memo.clear()
            coder.timings["entropy_s"] += time.perf_counter() - t1
            for i, t in enumerate(planned):
                data = stored[i][0]
                code = alloc.codes[i]
                flags = FLAG_MASK if data.valid is not None else 0
                if code is None:
                    out.add_tile(t.row, t.col, b"", coder.code, 0, MODE_SKIPPED)
                    coder.skipped += 1
                else:
                    out.add_tile(t.row, t.col, alloc.payloads[i], code, flags)
                    coder.coded += 1
                if progress:
                    progress(i + 1, total)
            coder.skipped += total - len(planned)  # no valid pixel: never coded

    def _analyse_all(self, spill: Path, halo: int):
        """-> (PlannedTile per codable tile, (TileData without pixels, latents file) per tile)."""
        coder = self.coder
        planned: list[PlannedTile] = []
        stored: list[tuple[TileData, Path]] = []
        with ThreadPoolExecutor(1) as pool:
            for data, latents in pool.map(coder.analyse, coder.reader.tiles(halo)):
                if latents is None:
                    continue
                value = rank_tiles(data, coder.reader, self.rules)
                path = spill / f"{len(stored)}.npz"
                np.savez(path, y=latents[0], z=latents[1])
                planned.append(PlannedTile(data.tile.row, data.tile.col, value.rank, value.lowest, value.skip))
                stored.append((TileData(data.tile, np.empty(0), data.valid), path))
        return planned, stored
