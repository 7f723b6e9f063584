"""mypy over the installed package. The package maps onboard/, ground/ and shared/ under
``fool`` (pyproject's package-dir), which mypy cannot follow, so the test lays the same tree
out with symlinks and checks ``-p fool`` there."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("mypy", path=str(Path(sys.executable).parent)) is None, reason="mypy not installed")
def test_package_type_checks(tmp_path):
    pkg = tmp_path / "fool"
    pkg.mkdir()
    for item in (ROOT / "fool").iterdir():
        if item.name != "__pycache__":
            (pkg / item.name).symlink_to(item)
    for side in ("onboard", "ground", "shared"):
        (pkg / side).symlink_to(ROOT / side)
    mypy = Path(sys.executable).parent / "mypy"
    config, cache = str(ROOT / "pyproject.toml"), str(tmp_path / ".mypy")
    r = subprocess.run(
        [str(mypy), "-p", "fool", "--config-file", config, "--cache-dir", cache],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
