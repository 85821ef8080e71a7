"""MediaPipe as a real client of edgekd's TFLite files: find a Python that has it, write the test split as PNG files,
and compare the top-1 of ``examples/mediapipe/classify.py`` with ``edgekd predict``.

Shared by tests/convert/test_mediapipe_client.py and benchmarks/mediapipe_agreement.py. MediaPipe lives in its own
virtual environment (``make mediapipe``, or ``EDGEKD_MEDIAPIPE_PYTHON``): it brings opencv-contrib and its own TFLite
runtime, which edgekd's environment does not need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from _shared import ROOT

MP_APP = ROOT / "examples" / "mediapipe" / "classify.py"
ENV_VAR = "EDGEKD_MEDIAPIPE_PYTHON"
VENV = ROOT / ".venv-mediapipe"  # where `make mediapipe` installs it


def mediapipe_python() -> tuple[str | None, str]:
    """(a Python that imports mediapipe's vision tasks, its version) or (None, why none was found)."""
    env = os.environ.get(ENV_VAR)
    candidates = [env] if env else [str(VENV / "bin" / "python"), sys.executable]
    why = []
    for py in candidates:
        if not Path(py).is_file():
            why.append(f"{py}: not found")
            continue
        probe = "import mediapipe; from mediapipe.tasks.python import vision; print(mediapipe.__version__)"
        try:
            proc = subprocess.run([py, "-c", probe], capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            why.append(f"{py}: importing mediapipe took over 180 s")
            continue
        if proc.returncode == 0:
            return py, proc.stdout.strip()
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        why.append(f"{py}: {last}")
    return None, (
        f"mediapipe is not installed ({'; '.join(why)}): run `make mediapipe` or set {ENV_VAR} to a Python that has "
        "`pip install mediapipe`"
    )


def write_pngs(x: np.ndarray, folder: Path) -> list[Path]:
    """Images (N, C, H, W) in [0, 1] -> 8-bit PNG files (grey or RGB), as an app would receive them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(np.asarray(x)):
        px = np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)
        path = folder / f"img{i:05d}.png"
        Image.fromarray(px[0] if px.shape[0] == 1 else px.transpose(1, 2, 0)).save(path)
        paths.append(path)
    return paths


def mediapipe_top1(python: str, model: Path, images: list[Path]) -> list[dict]:
    """The MediaPipe example app's answer per image: {"image", "top": [{"label", "index", "score", "probability"}]}."""
    proc = subprocess.run(
        [python, str(MP_APP), str(model), *map(str, images), "--json", "--top", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GLOG_minloglevel": "2"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"MediaPipe failed on {model.name}: {proc.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def agreement(python: str, model: Path, images: list[Path]) -> dict:
    """Top-1 of MediaPipe vs ``edgekd predict`` on ``images``: the fraction that agree, and the largest difference
    between their top-1 probabilities."""
    import edgekd

    mp_rows = mediapipe_top1(python, model, images)
    ref = edgekd.predict(model, images, top_k=1)
    if len(mp_rows) != len(ref):
        raise RuntimeError(f"MediaPipe answered for {len(mp_rows)} of {len(ref)} images")
    same = [m["top"][0]["index"] == r["top"][0]["index"] for m, r in zip(mp_rows, ref, strict=True)]
    diff = [abs(m["top"][0]["probability"] - r["top"][0]["probability"]) for m, r in zip(mp_rows, ref, strict=True)]
    return {"images": len(same), "agree": int(sum(same)), "agreement": float(np.mean(same)), "max_prob_diff": max(diff)}
