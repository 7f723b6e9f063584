"""Encoder and decoder speed of FOOL against OpenJPEG and JPEG XL at equal output size.

    python bench/speed.py                                    # 4096x4096 4-band NAIP mosaic
    python bench/speed.py --size 2048 --repeat 3             # quicker, median of 3 rounds
    python bench/speed.py --scene some.tif                   # an existing GeoTIFF instead
    python bench/speed.py --tile-size 256 --model fool-m3    # other compress settings, every FOOL row
    python bench/speed.py --size 20000 --bands 1 --dtype uint16 --fool-only   # peak RSS, long

Every codec runs as a whole child process (start-up, reading the GeoTIFF and writing the
output included), one after the other on the same scene, and is measured from ``os.wait4``:
wall time, CPU time (user + sys) and peak RSS. The machine is shared, so the numbers that mean
something are the ratios to OpenJPEG measured in the same run; ``--repeat`` interleaves rounds
and reports medians.

* FOOL: ``fool compress --runtime onnx`` with default settings (quality, tiles, workers), then
  ``fool decode`` (the ground's synthesis, ONNX Runtime by default; its one-time export into the
  cache is made before the timed runs) to a GeoTIFF.
* FOOL variants (``--variant NAME=DIR``, repeatable: e.g. ``int8=DIR`` for a
  ``fool export-onnx --int8`` export, or another model's export): the same command with that
  flight export, as the row ``fool-NAME``; their bytes are their own.
* FOOL synthesis variants (``--synthesis VARIANT``, repeatable: e.g. ``fast``): ``fool decode
  --synthesis VARIANT`` of FOOL's own container, as the row ``fool:VARIANT`` (decode only: the
  bytes are FOOL's).
* OpenJPEG: ``imagecodecs.jpeg2k_encode(..., level=PSNR, codecformat="J2K", numthreads=2)``, a
  raw J2K codestream of all bands, the PSNR target bisected (untimed, in this process) until
  the file is within 0.5 % of FOOL's container; decode: ``jpeg2k_decode`` + a GeoTIFF write.
* JPEG XL: ``imagecodecs.jpegxl_encode(..., distance=D, numthreads=2)`` per band group (RGB,
  then single bands: JPEG XL has no 4-channel colour mode), one distance for all groups,
  bisected to the same size; decode: ``jpegxl_decode`` per group + a GeoTIFF write.

The scene is the mosaic bench/throughput.py builds (4 bands: NAIP uint8; 1 band: WorldView-3
pan uint16). Results: a table on stdout and JSON in bench/results/speed.json (default scene)
or bench/results/speed_<bands>b_<size>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.005  # relative size difference the bisection stops at
SOURCE_DTYPE = {4: "uint8", 1: "uint16"}  # what bench/throughput.build_scene writes


def _throughput():
    spec = importlib.util.spec_from_file_location("fool_bench_throughput", ROOT / "bench" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- child processes (timed)


def _read(scene: str) -> tuple[np.ndarray, dict]:
    import rasterio

    with rasterio.open(scene) as ds:
        return np.moveaxis(ds.read(), 0, -1), ds.profile


def _write(path: str, image: np.ndarray, profile: dict) -> None:
    import rasterio
    from affine import Affine

    profile = dict(profile) | {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512}
    profile["transform"] = Affine(*profile["transform"])
    if profile["crs"] is None:
        del profile["crs"]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))


def _groups(bands: int) -> list[list[int]]:
    """JPEG XL's colour modes: band groups of 3 (RGB) and single bands (grey)."""
    first = [[0, 1, 2]] if bands >= 3 else []
    return first + [[b] for b in range(3 if first else 0, bands)]


def _jxl_encode(image: np.ndarray, distance: float) -> list[bytes]:
    import imagecodecs

    out = []
    for g in _groups(image.shape[-1]):
        part = np.ascontiguousarray(image[..., g] if len(g) == 3 else image[..., g[0]])
        out.append(imagecodecs.jpegxl_encode(part, distance=distance, numthreads=2))
    return out


def _j2k_encode(image: np.ndarray, level: float) -> bytes:
    import imagecodecs

    return imagecodecs.jpeg2k_encode(image, level=level, codecformat="J2K", numthreads=2)


def child(argv: list[str]) -> None:
    """``speed.py --child KIND SRC DST [PARAM]``: one timed codec run."""
    kind, src, dst = argv[:3]
    import imagecodecs

    if kind == "j2k-encode":
        Path(dst).write_bytes(_j2k_encode(_read(src)[0], float(argv[3])))
    elif kind == "jxl-encode":
        for i, data in enumerate(_jxl_encode(_read(src)[0], float(argv[3]))):
            Path(f"{dst}.{i}").write_bytes(data)
    elif kind == "j2k-decode":
        profile = json.loads(argv[3])
        _write(dst, imagecodecs.jpeg2k_decode(Path(src).read_bytes(), numthreads=2), profile)
    elif kind == "jxl-decode":
        profile = json.loads(argv[3])
        parts = [
            imagecodecs.jpegxl_decode(Path(f"{src}.{i}").read_bytes(), numthreads=2)
            for i in range(len(_groups(profile["count"])))
        ]
        _write(dst, np.concatenate([p if p.ndim == 3 else p[..., None] for p in parts], axis=-1), profile)
    else:
        raise SystemExit(f"unknown child {kind}")


# ---------------------------------------------------------------- parent


def measure(log: str, cmd: list[str]) -> None:
    """``speed.py --measure LOG CMD...``: run CMD, print its wall, CPU and peak RSS as JSON.

    A child's peak RSS counts the memory of the process it was forked from (the kernel keeps
    the high-water mark across exec), and this parent holds the decoded scene for the
    bisections: so every timed run is forked from this small launcher instead."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    result = {
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }
    print(json.dumps(result))


def timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` as a child process -> wall, CPU (user, sys) seconds and peak RSS (MB)."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", str(log), *cmd],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result.pop("exit"):
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{log.read_text()[-3000:]}")
    return result


def bisect(encode, target: int, lo: float, hi: float, increasing: bool, log_scale: bool = False, steps: int = 30):
    """-> (parameter, size) with size within TOLERANCE of target (or the closest one seen)."""
    best = None
    for _ in range(steps):
        mid = float(np.sqrt(lo * hi)) if log_scale else (lo + hi) / 2
        size = encode(mid)
        if best is None or abs(size - target) < abs(best[1] - target):
            best = (mid, size)
        if abs(size - target) <= TOLERANCE * target:
            break
        if (size < target) == increasing:
            lo = mid
        else:
            hi = mid
    return best


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / max(err, 1e-12)))


def _decoded(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return np.moveaxis(ds.read(), 0, -1)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        measure(sys.argv[2], sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--bands", type=int, choices=(1, 4), default=4)
    ap.add_argument("--dtype", choices=("uint8", "uint16"), default=None, help="[4 bands: uint8, 1 band: uint16]")
    ap.add_argument("--scene", type=Path, default=None, help="an existing GeoTIFF instead of the mosaic")
    ap.add_argument("--flight", type=Path, default=None, help="ONNX flight export [exported into the workdir]")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also time FOOL with this flight export (e.g. int8=DIR from fool export-onnx --int8)",
    )
    ap.add_argument(
        "--synthesis",
        action="append",
        default=[],
        metavar="VARIANT",
        help="also decode FOOL's container with this synthesis variant (e.g. fast: fool decode --synthesis fast)",
    )
    ap.add_argument("--quality", type=float, default=None, help="fool compress -q [its default]")
    ap.add_argument("--tile-size", type=int, default=None, help="fool compress --tile-size [its default]")
    ap.add_argument("--model", default=None, help="fool compress --model (and the export of it) [its default]")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds; medians are reported")
    ap.add_argument("--fool-only", action="store_true", help="only FOOL's encoder (e.g. peak RSS at 20000 px)")
    ap.add_argument("--no-jxl", action="store_true")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="JSON file [bench/results/speed*.json]")
    args = ap.parse_args()
    if args.scene is None and args.dtype not in (None, SOURCE_DTYPE[args.bands]):
        raise SystemExit(
            f"the {args.bands}-band mosaic is {SOURCE_DTYPE[args.bands]}; --dtype {args.dtype} is not built"
        )
    py = sys.executable
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="fool-speed-") as tmp:
        tmp = Path(tmp)
        if args.scene:
            scene = args.scene
        else:
            print(f"building the {args.size}x{args.size} {args.bands}-band mosaic ...", flush=True)
            scene = _throughput().build_scene(tmp / "scene.tif", args.size, args.bands)
        flight = args.flight
        if flight is None:  # the model fool compress picks for the scene's dtype
            import rasterio
            from fool.shared.zoo import model_for

            with rasterio.open(scene) as ds:
                model = args.model or model_for(ds.dtypes[0])
            flight = tmp / "flight"
            export = [py, "-m", "fool.cli", "export-onnx", "--model", model, "-o", str(flight)]
            subprocess.run(export, check=True, capture_output=True)
        fool_cmd = [py, "-m", "fool.cli", "compress", str(scene), "-o", str(tmp / "scene.fool")]
        fool_cmd += ["--runtime", "onnx", "--flight", str(flight)]
        if args.quality is not None:
            fool_cmd += ["-q", str(args.quality)]
        if args.tile_size is not None:
            fool_cmd += ["--tile-size", str(args.tile_size)]
        if args.model is not None:
            fool_cmd += ["--model", args.model]
        variants = {}
        for spec in args.variant:
            name, sep, folder = spec.partition("=")
            if not sep or not name or not folder:
                raise SystemExit(f"--variant wants NAME=DIR, got {spec!r}")
            out = tmp / f"scene-{name}.fool"
            cmd = [*fool_cmd[:6], str(out), "--runtime", "onnx", "--flight", folder, *fool_cmd[11:]]
            variants[f"fool-{name}"] = (cmd, out)
        import rasterio

        with rasterio.open(scene) as ds:
            width, height, count, dtype = ds.width, ds.height, ds.count, ds.dtypes[0]
            profile = {
                "driver": "GTiff",
                "width": width,
                "height": height,
                "count": count,
                "dtype": dtype,
                "crs": ds.crs.to_string() if ds.crs else None,
                "transform": list(ds.transform)[:6],
            }
        pixels = width * height
        print(f"scene {scene.name}: {width}x{height}, {count} bands {dtype}", flush=True)

        # the first FOOL run fixes the target size; the baselines' parameters are bisected to it
        first = timed(fool_cmd, tmp / "fool.log")
        target = (tmp / "scene.fool").stat().st_size
        print(f"fool compress: {target} bytes, {first['wall_s']:.1f} s", flush=True)
        codecs: dict[str, dict] = {"fool": {"bytes": target, "encode": [first], "decode": []}}
        for name in variants:
            codecs[name] = {"bytes": 0, "encode": [], "decode": []}
        syntheses = {f"fool:{v}": v for v in args.synthesis}
        for name in syntheses:
            codecs[name] = {"bytes": target, "encode": [], "decode": []}
        if not args.fool_only:
            image = _read(str(scene))[0]
            t0 = time.perf_counter()
            level, size = bisect(lambda q: len(_j2k_encode(image, q)), target, 10.0, 90.0, increasing=True)
            print(
                f"openjpeg: PSNR target {level:.3f} dB -> {size} bytes ({time.perf_counter() - t0:.0f} s)", flush=True
            )
            codecs["openjpeg"] = {"bytes": size, "param": {"level": level}, "encode": [], "decode": []}
            if not args.no_jxl:
                t0 = time.perf_counter()
                dist, size = bisect(
                    lambda d: sum(map(len, _jxl_encode(image, d))), target, 0.05, 25.0, increasing=False, log_scale=True
                )
                print(f"jpegxl: distance {dist:.4f} -> {size} bytes ({time.perf_counter() - t0:.0f} s)", flush=True)
                codecs["jpegxl"] = {"bytes": size, "param": {"distance": dist}, "encode": [], "decode": []}
            del image
        profile_json = json.dumps(profile)

        def encode(name: str) -> dict | None:
            if name in syntheses:
                return None  # decode only: FOOL's bytes
            if name == "fool":
                return timed(fool_cmd, tmp / "fool.log")
            if name in variants:
                cmd, out = variants[name]
                run = timed(cmd, tmp / f"{name}.log")
                codecs[name]["bytes"] = out.stat().st_size
                return run
            kind = {"openjpeg": "j2k", "jpegxl": "jxl"}[name]
            param = next(iter(codecs[name]["param"].values()))
            return timed(
                [py, me, "--child", f"{kind}-encode", str(scene), str(tmp / kind), repr(param)], tmp / f"{kind}.log"
            )

        def decode(name: str) -> dict:
            if name == "fool" or name in variants or name in syntheses:
                src = variants[name][1] if name in variants else tmp / "scene.fool"
                cmd = [py, "-m", "fool.cli", "decode", str(src), "-o", str(tmp / f"{name}.tif")]
                if name in syntheses:
                    cmd += ["--synthesis", syntheses[name]]
                return timed(cmd, tmp / f"{name}-decode.log")
            kind = {"openjpeg": "j2k", "jpegxl": "jxl"}[name]
            cmd = [py, me, "--child", f"{kind}-decode", str(tmp / kind), str(tmp / f"{kind}.tif"), profile_json]
            return timed(cmd, tmp / f"{kind}-decode.log")

        if not args.no_decode and not args.fool_only:  # untimed: the ONNX synthesis export, once
            warm = (
                "import sys\nfrom fool.shared.format import Container\nfrom fool.ground.synthesis import "
                "synthesis_export\nwith Container.open(sys.argv[1]) as c:\n"
                "    for v in [None, *sys.argv[2:]]:\n"
                "        synthesis_export(c.scene.model_name, c.scene.model_sha256, variant=v)"
            )
            subprocess.run([py, "-c", warm, str(tmp / "scene.fool"), *args.synthesis], check=True)
        for r in range(args.repeat):
            for name in codecs:
                if not (name == "fool" and r == 0):  # round 0's FOOL run is the one above
                    run = encode(name)
                    if run is not None:
                        codecs[name]["encode"].append(run)
            if not args.no_decode and not args.fool_only:
                for name in codecs:
                    codecs[name]["decode"].append(decode(name))
            print(f"round {r + 1}/{args.repeat} done", flush=True)
        if not args.no_decode and not args.fool_only:
            image = _read(str(scene))[0]
            peak = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
            if dtype == "uint16":
                peak = float(image.max())  # 11/12-bit data in uint16: PSNR against its own peak
            ours = {n: f"{n}.tif" for n in [*variants, *syntheses]}
            tifs = {"fool": "fool.tif", **ours, "openjpeg": "j2k.tif", "jpegxl": "jxl.tif"}
            for name, tif in tifs.items():
                if name in codecs:
                    codecs[name]["psnr_db"] = round(psnr(image, _decoded(tmp / tif), peak), 3)
            del image

    result = summarise(codecs, pixels, count, args, scene, dtype)
    print(table(result))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    default = args.scene is None and args.size == 4096 and args.bands == 4
    out = args.out or results / ("speed.json" if default else f"speed_{args.bands}b_{args.size}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def _cpu_flags() -> list[str]:
    """The SIMD extensions that decide these ratios (AVX-512 and VNNI change them most)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    flags = next((line for line in lines if line.startswith("flags")), "").split()
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]


def summarise(codecs: dict, pixels: int, bands: int, args, scene: Path, dtype: str) -> dict:
    def median(runs: list[dict]) -> dict:
        return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]} if runs else {}

    rows = {}
    for name, c in codecs.items():
        rows[name] = {
            "bytes": c["bytes"],
            "bpp": round(8 * c["bytes"] / pixels, 4),
            "param": c.get("param", {}),
            "psnr_db": c.get("psnr_db"),
            "encode": median(c["encode"]),
            "decode": median(c["decode"]),
            "runs": {"encode": c["encode"], "decode": c["decode"]},
        }
    ref = rows.get("openjpeg")
    for row in rows.values():
        for step in ("encode", "decode"):
            if ref and ref[step] and row[step]:
                row[step]["wall_ratio"] = round(row[step]["wall_s"] / ref[step]["wall_s"], 3)
                row[step]["cpu_ratio"] = round(row[step]["cpu_s"] / max(ref[step]["cpu_s"], 1e-9), 3)
                row[step]["mp_per_s"] = round(pixels / 1e6 / row[step]["wall_s"], 3)
            elif row[step]:
                row[step]["mp_per_s"] = round(pixels / 1e6 / row[step]["wall_s"], 3)
    return {
        "scene": "mosaic" if args.scene is None else str(scene),
        "size": args.size if args.scene is None else None,
        "bands": bands,
        "dtype": dtype,
        "megapixels": round(pixels / 1e6, 3),
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "load_average": os.getloadavg(),
        "ratio_to": "openjpeg (same run)",
        "codecs": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"{result['megapixels']} MP, {result['bands']} bands {result['dtype']}; ratios are to OpenJPEG in this run",
        f"{'codec':9s} {'step':6s} {'bytes':>10s} {'bpp':>7s} {'PSNR':>6s} {'wall s':>8s} {'CPU s':>7s} "
        f"{'sys s':>6s} {'RSS MB':>7s} {'MP/s':>6s} {'wall/J2K':>8s} {'CPU/J2K':>8s}",
    ]
    for step in ("encode", "decode"):
        for name, row in result["codecs"].items():
            m = row[step]
            if not m:
                continue
            p = f"{row['psnr_db']:6.2f}" if row["psnr_db"] is not None else f"{'':6s}"
            wr = f"{m['wall_ratio']:8.2f}" if "wall_ratio" in m else f"{'':8s}"
            cr = f"{m['cpu_ratio']:8.2f}" if "cpu_ratio" in m else f"{'':8s}"
            lines.append(
                f"{name:9s} {step:6s} {row['bytes']:10d} {row['bpp']:7.4f} {p} {m['wall_s']:8.2f} {m['cpu_s']:7.2f} "
                f"{m['sys_s']:6.2f} {m['peak_rss_mb']:7.1f} {m['mp_per_s']:6.2f} {wr} {cr}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
