"""Decode many ``.fool`` containers in one batch, on a local process pool or a Dask cluster.

A batch is a list of scenes (containers) and an output folder. Each scene is one task,
:func:`decode_scene`: it writes its outputs under temporary names, renames them into place,
and writes ``<stem>.done.json`` last. A re-run skips a scene whose record matches the input's
size, mtime and CRC-32 and the options that change what is written (:meth:`BatchOptions.signature`:
output kinds, cog, quicklook, stac, strict, threads for pixels), so an interrupted pass resumes
and a changed container, or one asked for with other options, is decoded again.

Every task runs the same code with the same torch thread count (``threads``, 1 by default)
wherever it runs, so the in-process, pool and Dask paths write identical pixels. Models are
loaded once per worker process and cached by model (:func:`synthesis_for`). A failure of one
scene (bad container, damaged tile with ``strict``, disk full) is caught in its task and
reported; the batch goes on.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fool.shared.errors import FoolError, InputError

OUTPUT_KINDS = ("image", "features", "both")
SUMMARY_NAME = "summary.json"
DONE_SUFFIX = ".done.json"
RECORD_VERSION = 1


@dataclass(frozen=True)
class BatchOptions:
    """What to write for each scene and where to run; the same object travels to every worker."""

    output: str = "image"  # image | features | both
    workers: int | None = None  # local processes; None = one per core
    scheduler: str | None = None  # Dask scheduler address; None = local pool
    cog: bool = False
    quicklook: bool = False
    stac: bool = False
    strict: bool = False  # a damaged tile fails its scene instead of being left as nodata
    threads: int = 1  # torch intra-op threads per task: the same everywhere keeps results identical
    retries: int = 2  # Dask reruns of a task whose worker died or that raised
    progress: bool = True  # a bar on stderr when it is a terminal
    feature_model: str | None = None  # feature mode: also restore backbone features (fool train-feature-mode)
    runtime: str = "onnx"  # synthesis runtime (ground/synthesis.py): onnx | torch, the same in every task
    synthesis: str | None = None  # a shipped synthesis variant of each container's model (e.g. fast)

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise InputError(f"output must be one of {', '.join(OUTPUT_KINDS)}, got {self.output!r}")
        if (self.cog or self.quicklook) and not self.images:
            raise InputError("--cog and --quicklook need the image output (--output image or both)")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        if self.feature_model is not None and not self.features:
            raise InputError("--feature-model needs the feature output (--output features or both)")
        if self.threads < 1:
            raise InputError(f"threads must be at least 1, got {self.threads}")
        if self.runtime not in ("onnx", "torch"):
            raise InputError(f"runtime must be onnx or torch, got {self.runtime!r}")

    @property
    def images(self) -> bool:
        return self.output in ("image", "both")

    @property
    def features(self) -> bool:
        return self.output in ("features", "both")

    def signature(self) -> dict:
        """The options that change what is written: a done record made with others is redone.

        ``strict`` changes a scene with a damaged tile from partial (nodata there) to failed.
        ``threads`` is in it when pixels are written: float convolutions can differ in the last
        bit between thread counts (docs/design.md), so a scene decoded with other threads could
        differ from the rest of the batch; the latents are bit-exact, so features do not depend
        on it. The features format is in it, so folders of an older format are written again.
        The model is not an option: it is the container's, pinned by the input's fingerprint
        (and TorchSynthesis refuses installed weights of another hash)."""
        from fool.ground.features import FORMAT as FEATURES_FORMAT

        sig: dict = {
            "output": self.output,
            "cog": self.cog,
            "quicklook": self.quicklook,
            "stac": self.stac,
            "strict": self.strict,
        }
        if self.images:
            sig["threads"] = self.threads
            if self.runtime != "torch":  # records written before the ONNX runtime were torch's
                sig["runtime"] = self.runtime
            if self.synthesis is not None:
                sig["synthesis"] = self.synthesis
        if self.features:
            sig["features_format"] = FEATURES_FORMAT
            if self.feature_model is not None:
                sig["feature_model"] = self.feature_model
        return sig


@dataclass
class SceneResult:
    """What happened to one scene; also the body of its done record and its line in summary.json."""

    source: str
    stem: str
    status: str  # decoded | partial | failed
    resumed: bool = False  # outputs were already complete; nothing was decoded this run
    tiles: int = 0  # tiles in the scene's grid
    received: int = 0  # tiles in the container with a payload
    missing: list[list[int]] = field(default_factory=list)  # (row, col) lost on the link
    skipped: list[list[int]] = field(default_factory=list)  # (row, col) not sent by the satellite (priority, budget)
    damaged: list[list[int]] = field(default_factory=list)  # (row, col) that failed their CRC or decoding
    bytes: int = 0
    width: int = 0
    height: int = 0
    bands: int = 0
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)  # kind -> name inside the output folder
    footprint: dict | None = None  # GeoJSON polygon in lon/lat, None without a CRS
    error: str | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def bpp(self) -> float:
        return 8 * self.bytes / self.pixels if self.pixels else 0.0

    @property
    def mp_per_s(self) -> float:
        return self.pixels / 1e6 / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"bpp": round(self.bpp, 4), "mp_per_s": round(self.mp_per_s, 3)}

    @classmethod
    def from_dict(cls, d: dict) -> SceneResult:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class BatchSummary:
    outdir: Path
    results: list[SceneResult]
    seconds: float
    runner: str

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 all decoded, 1 every scene failed, 2 some failed, 3 all written but tiles missing or damaged."""
        failed = self.count("failed")
        if failed:
            return 1 if failed == len(self.results) else 2
        return 3 if self.count("partial") else 0

    def to_dict(self) -> dict:
        decoded = [r for r in self.results if r.status != "failed" and not r.resumed]
        pixels = sum(r.pixels for r in decoded)
        return {
            "outdir": str(self.outdir),
            "runner": self.runner,
            "scenes": len(self.results),
            "decoded": self.count("decoded"),
            "partial": self.count("partial"),
            "failed": self.count("failed"),
            "resumed": sum(r.resumed for r in self.results),
            "tiles": sum(r.received for r in self.results),
            "missing_tiles": sum(len(r.missing) for r in self.results),
            "damaged_tiles": sum(len(r.damaged) for r in self.results),
            "megapixels": round(pixels / 1e6, 3),
            "mp_per_s": round(pixels / 1e6 / self.seconds, 3) if self.seconds else 0.0,
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
            "failures": [{"source": r.source, "error": r.error} for r in self.results if r.status == "failed"],
            "results": [r.to_dict() for r in self.results],
        }


# ---------------------------------------------------------------- inputs


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given (a non-container becomes a failed scene), folders searched recursively for
    ``*.fool``, anything else as a glob. Stems must be unique: they name the outputs."""
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*.fool") if p.is_file())
        elif path.exists():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"{item}: no such file, folder or matching glob")
        found.update(dict.fromkeys(matches))
    if not found:
        raise InputError(f"no .fool containers found in {', '.join(map(str, inputs))}")
    _check_stems(list(found))
    return list(found)


def _check_stems(paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen and seen[p.stem].resolve() != p.resolve():
            raise InputError(f"{seen[p.stem]} and {p} would both write {p.stem}.*; rename one or decode them apart")
        seen[p.stem] = p


# ---------------------------------------------------------------- resume records


def fingerprint(src: Path) -> dict:
    """Size, mtime and CRC-32 of the input: any change means the scene is decoded again."""
    crc = 0
    with open(src, "rb") as fh:
        while chunk := fh.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    st = src.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "crc32": crc}


def done_path(outdir: Path, stem: str) -> Path:
    return outdir / f"{stem}{DONE_SUFFIX}"


def write_json_atomic(dst: Path, data: dict) -> Path:
    tmp = dst.with_name(f".{dst.name}.partial")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, dst)
    return dst


def load_done(src: Path, outdir: Path, options: BatchOptions) -> SceneResult | None:
    """The recorded result when the scene's outputs are complete for this input and these options."""
    record_path = done_path(outdir, src.stem)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("version") != RECORD_VERSION or record.get("options") != options.signature():
        return None
    if record.get("input") != fingerprint(src):
        return None
    result = SceneResult.from_dict(record["result"])
    if not all((outdir / name).exists() for name in result.outputs.values()):
        return None
    result.resumed = True
    return result


# ---------------------------------------------------------------- one scene (runs in a worker)

_SYNTHESES: dict[tuple[str, str, str, str | None], object] = {}


def synthesis_for(model_name: str, model_sha256: str, threads: int, runtime: str = "torch", variant: str | None = None):
    """One synthesis per model, runtime and variant per process: loading weights costs seconds, a tile milliseconds."""
    key = (model_name, model_sha256, runtime, variant)
    if key not in _SYNTHESES:
        from fool.ground.synthesis import load_synthesis

        _SYNTHESES[key] = load_synthesis(runtime, model_name, model_sha256, threads, variant)
    return _SYNTHESES[key]


def init_worker(threads: int) -> None:
    """Pool initializer: torch and BLAS threads fixed before torch is imported."""
    import warnings

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    warnings.filterwarnings("ignore", category=FutureWarning)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, FoolError) else f"{type(exc).__name__}: {text}"


def decode_scene(src: str | Path, outdir: str | Path, options: BatchOptions) -> SceneResult:
    """Decode one container into ``outdir``; never raises for a problem of this scene.

    A done record already there was made for another input or other options (else the scene
    would have been skipped): it goes first, so no record ever vouches for a mix of old and new
    outputs. If the scene then fails, the outputs that record listed go too: they are of another
    input or options (say a damaged tile left as nodata, where ``strict`` asked to refuse it),
    and a failed scene leaves nothing behind."""
    src, outdir = Path(src), Path(outdir)
    start = time.perf_counter()
    stale = _drop_record(outdir, src.stem)
    try:
        record_input = fingerprint(src)
        result = _write_outputs(src, outdir, options)
    except Exception as exc:  # noqa: BLE001 - one scene's failure, whatever it is, must not stop the batch
        _remove_outputs(outdir, stale)
        return SceneResult(str(src), src.stem, "failed", seconds=time.perf_counter() - start, error=one_line(exc))
    result.seconds = time.perf_counter() - start
    record = {"version": RECORD_VERSION, "input": record_input, "options": options.signature()}
    write_json_atomic(done_path(outdir, src.stem), record | {"result": result.to_dict()})
    return result


def _drop_record(outdir: Path, stem: str) -> list[str]:
    """Remove the scene's done record; -> the output names it listed (none without a readable record)."""
    path = done_path(outdir, stem)
    try:
        outputs = json.loads(path.read_text())["result"]["outputs"]
        names = [n for n in outputs.values() if isinstance(n, str)] if isinstance(outputs, dict) else []
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    path.unlink(missing_ok=True)
    return names


def _remove_outputs(outdir: Path, names: list[str]) -> None:
    import shutil

    for name in names:
        target = outdir / name
        if Path(name).name != name or name.startswith("."):
            continue  # a record names files inside the folder only; never follow anything else
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def _write_outputs(src: Path, outdir: Path, options: BatchOptions) -> SceneResult:
    from fool.ground import stac
    from fool.ground.decode import read_header
    from fool.shared.format import MODE_LOST, MODE_SKIPPED, Container

    with Container.open(src) as container:
        scene = read_header(container)
        received = {(e.row, e.col) for e in container.coded_tiles}
        # lost on the link, or never heard of (fool unpack writes those as lost too); tiles skipped on
        # board by priority or budget, and all-nodata tiles (not in the table), are not missing
        lost = {(e.row, e.col) for e in container.tiles if e.mode == MODE_LOST}
        skipped = [[e.row, e.col] for e in container.tiles if e.mode == MODE_SKIPPED]
        size = container.size
    synthesis = synthesis_for(scene.model_name, scene.model_sha256, options.threads, options.runtime, options.synthesis)
    outputs: dict[str, str] = {}
    damaged: set[tuple[int, int]] = set()
    if options.images:
        damaged |= _write_image(src, outdir, options, synthesis)
        outputs["image"] = f"{src.stem}.tif"
    if options.features:
        from fool.ground.features import load_feature_model, write_features

        feature_model = load_feature_model(Path(options.feature_model)) if options.feature_model else None
        damaged |= set(write_features(src, outdir / f"{src.stem}.features", synthesis, options.strict, feature_model))
        outputs["features"] = f"{src.stem}.features"
    missing = sorted(lost)
    if options.quicklook:
        outputs["quicklook"] = _write_quicklook(outdir, src.stem, scene, missing, sorted(damaged))
    result = SceneResult(
        source=str(src),
        stem=src.stem,
        status="partial" if missing or damaged else "decoded",
        tiles=len(scene.grid),
        received=len(received),
        missing=[list(rc) for rc in missing],
        skipped=skipped,
        damaged=[list(rc) for rc in sorted(damaged)],
        bytes=size,
        width=scene.width,
        height=scene.height,
        bands=scene.count,
        outputs=outputs,
        footprint=stac.footprint(scene)[0],
    )
    if options.stac:
        item = stac.build_item(result, scene, outdir, cog=options.cog)
        result.outputs["stac"] = stac.write_item(item, outdir / f"{src.stem}.item.json").name
    return result


def _write_image(src: Path, outdir: Path, options: BatchOptions, synthesis) -> set[tuple[int, int]]:
    from fool.ground.decode import decode_container

    dst = outdir / f"{src.stem}.tif"
    if not options.cog:
        report = decode_container(src, dst, options.threads, not options.strict, None, synthesis)
        return set(report.failed)
    raw = outdir / f".{src.stem}.raw.tif"
    try:
        report = decode_container(src, raw, options.threads, not options.strict, None, synthesis)
        write_cog(raw, dst)
    finally:
        raw.unlink(missing_ok=True)
    return set(report.failed)


def cog_overview_count(width: int, height: int, blocksize: int) -> int:
    """Halvings until the scene fits one block, at least one so every COG has an overview."""
    count, side = 0, max(width, height)
    while side > blocksize:
        side, count = -(-side // 2), count + 1
    return max(1, count)


def write_cog(src: Path, dst: Path, blocksize: int = 256) -> Path:
    """A Cloud-Optimised GeoTIFF of ``src`` (GDAL's COG driver: tiled, overviews, IFDs first), atomically."""
    import rasterio
    import rasterio.shutil

    with rasterio.open(src) as ds:
        overviews = cog_overview_count(ds.width, ds.height, blocksize)
    tmp = dst.with_name(f".{dst.name}.cog.partial.tif")
    try:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            rasterio.shutil.copy(
                src,
                tmp,
                driver="COG",
                COMPRESS="DEFLATE",
                BLOCKSIZE=blocksize,
                OVERVIEWS="IGNORE_EXISTING",
                OVERVIEW_COUNT=overviews,
                RESAMPLING="AVERAGE",
                BIGTIFF="IF_SAFER",
            )
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def _write_quicklook(outdir: Path, stem: str, scene, missing: list, damaged: list) -> str:
    from fool.ground.quicklook import write_quicklook

    dst = outdir / f"{stem}.png"
    write_quicklook(outdir / f"{stem}.tif", dst, _windows(scene, missing), _windows(scene, damaged))
    return dst.name


def _windows(scene, cells: list) -> list:
    return [scene.grid.tile(r, c).window() for r, c in cells]


# ---------------------------------------------------------------- running a batch


def run_batch(inputs: Sequence[str | Path], outdir: Path, options: BatchOptions) -> BatchSummary:
    """Expand ``inputs``, skip scenes already done, decode the rest, write summary.json."""
    start = time.perf_counter()
    scenes = expand_inputs(inputs)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"output {outdir} is a file; a batch writes into a folder")
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict[Path, SceneResult] = {}
    todo = []
    for src in scenes:
        done = load_done(src, outdir, options)
        if done is None:
            todo.append(src)
        else:
            results[src] = done
    with _progress_bar(len(scenes), len(results), options.progress) as bar:
        for src, result in _run(todo, outdir, options):
            results[src] = result
            bar.update(1)
    summary = BatchSummary(outdir, [results[s] for s in scenes], time.perf_counter() - start, _runner(options, todo))
    write_json_atomic(outdir / SUMMARY_NAME, summary.to_dict())
    return summary


def _progress_bar(total: int, initial: int, wanted: bool):
    from tqdm import tqdm

    disable = not (wanted and sys.stderr.isatty())
    return tqdm(total=total, initial=initial, unit="scene", desc="decode", file=sys.stderr, disable=disable)


def _runner(options: BatchOptions, todo: list) -> str:
    if options.scheduler:
        return f"dask {options.scheduler}"
    return f"local {_pool_size(options, len(todo))} worker(s)"


def _pool_size(options: BatchOptions, scenes: int) -> int:
    return max(1, min(options.workers or os.cpu_count() or 1, scenes))


def _run(todo: list[Path], outdir: Path, options: BatchOptions) -> Iterator[tuple[Path, SceneResult]]:
    if not todo:
        return iter(())
    if options.scheduler:
        return _run_dask(todo, outdir, options)
    if _pool_size(options, len(todo)) == 1:
        return ((src, decode_scene(src, outdir, options)) for src in todo)
    return _run_pool(todo, outdir, options)


def _lost(src: Path, exc: BaseException) -> SceneResult:
    """A task that never returned (its worker died too often, the pool broke)."""
    return SceneResult(str(src), src.stem, "failed", error=f"worker lost: {one_line(exc)}")


def _run_pool(todo: list[Path], outdir: Path, options: BatchOptions) -> Iterator[tuple[Path, SceneResult]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked copy of a process holding torch's thread pools can hang
    context = multiprocessing.get_context("spawn")
    workers = _pool_size(options, len(todo))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(options.threads,)) as pool:
        futures = {pool.submit(decode_scene, src, outdir, options): src for src in todo}
        for future in as_completed(futures):
            src = futures[future]
            try:
                yield src, future.result()
            except Exception as exc:  # noqa: BLE001 - BrokenProcessPool and the like fail only these scenes
                yield src, _lost(src, exc)


def _run_dask(todo: list[Path], outdir: Path, options: BatchOptions) -> Iterator[tuple[Path, SceneResult]]:
    """Tasks on a Dask cluster; a worker that dies has its tasks rerun elsewhere (``retries``)."""
    from dask.distributed import Client, as_completed

    try:
        client = Client(options.scheduler, timeout="30s")
    except OSError as exc:  # refused, timed out, bad address
        raise InputError(f"cannot reach the Dask scheduler at {options.scheduler}: {one_line(exc)}") from None
    with client:
        futures = client.map(
            decode_scene,
            [str(s.resolve()) for s in todo],  # workers may run elsewhere on the shared filesystem
            outdir=str(outdir.resolve()),
            options=options,
            pure=False,
            retries=options.retries,
        )
        sources = {f.key: src for f, src in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            src = sources[future.key]
            try:
                yield src, future.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker after every retry: this scene failed
                yield src, _lost(src, exc)


# ---------------------------------------------------------------- the summary on screen


def format_summary(summary: BatchSummary, limit: int = 10) -> str:
    """One screen: totals, then the failed and partial scenes (at most ``limit`` of each)."""
    d = summary.to_dict()
    lines = [
        f"{d['scenes']} scenes: {d['decoded']} decoded, {d['partial']} partial, {d['failed']} failed"
        f" ({d['resumed']} already done)",
        f"{d['tiles']} tiles received, {d['missing_tiles']} missing, {d['damaged_tiles']} damaged;"
        f" {d['megapixels']:.1f} MP in {d['seconds']:.1f} s ({d['mp_per_s']:.2f} MP/s, {summary.runner})",
    ]
    lines += _listing("failed", [f"{Path(r.source).name}: {r.error}" for r in _with(summary, "failed")], limit)
    partial = [f"{r.stem}: {len(r.missing)} missing, {len(r.damaged)} damaged" for r in _with(summary, "partial")]
    lines += _listing("partial", partial, limit)
    lines.append(f"summary: {summary.outdir / SUMMARY_NAME}")
    return "\n".join(lines)


def _with(summary: BatchSummary, status: str) -> Iterable[SceneResult]:
    return (r for r in summary.results if r.status == status)


def _listing(title: str, items: list[str], limit: int) -> list[str]:
    if not items:
        return []
    more = [f"  ... and {len(items) - limit} more"] if len(items) > limit else []
    return [f"{title}:"] + [f"  {s}" for s in items[:limit]] + more
