"""An installed paperdigest (not a checkout) has every module, its templates and its model's vocabulary."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_template(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("paperdigest-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("digest/templates/")}
    expected = {f"digest/templates/{p.name}" for p in (ROOT / "templates").iterdir() if p.is_file()}
    assert expected and shipped == expected
    # The sentence model's WordPiece vocabulary: without it, embeddings fail on an installed copy.
    assert "digest/data/minilm-vocab.txt" in zipfile.ZipFile(wheel).namelist()


def test_the_wheel_ships_every_python_module(tmp_path: Path) -> None:
    """Every module of every package under digest/: the web side and the channels were once left
    out of the wheel, so an installed copy had no `digest serve`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("paperdigest-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "digest").rglob("*.py")}
    assert modules and modules <= shipped, sorted(modules - shipped)
