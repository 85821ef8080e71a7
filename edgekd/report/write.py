"""Write every report artifact for one run into a folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgekd.core.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from edgekd.report.html import to_html
from edgekd.report.markdown import to_markdown


def _json_safe(obj: Any) -> Any:
    """Copy of ``obj`` with NaN/inf replaced by None: json.dumps would emit bare NaN, which strict parsers reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write the plots, report.md, report.html and finally report.json into ``out_dir``.

    Returns the written paths keyed ``accuracy_vs_latency``, ``accuracy_vs_size`` (and ``latency_distribution`` when
    variants carry per-run latencies), ``markdown``, ``html``, ``json``.
    report.json is written last because other code treats its presence as "the report is complete".
    """
    # Imported here so that importing edgekd.report (e.g. for results_table in the CLI) does not load matplotlib.
    from edgekd.report.plots import render_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    images = render_plots(report)
    for name, data in images.items():
        paths[name.removesuffix(".png")] = atomic_write_bytes(out_dir / name, data)

    paths["markdown"] = atomic_write_text(out_dir / "report.md", to_markdown(report))
    paths["html"] = atomic_write_text(out_dir / "report.html", to_html(report, images))
    paths["json"] = atomic_write_json(out_dir / "report.json", _json_safe(report))
    return paths
