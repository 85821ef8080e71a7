"""Every figure of the fast-distillation and scale-out section of the README, from one command.

    python benchmarks/speed_figures.py            # ~30 min on 2 quiet cores
    python benchmarks/speed_figures.py --quick    # tiny settings, checks the scripts

Runs, one after the other (never two timings at once), benchmarks/distill_speed.py --scale (distill throughput vs
the plain loop and accuracy over 3 seeds; 1 vs 2 processes) and benchmarks/pipeline_profile.py --fast (cold and cached
pipeline time, seconds per stage and per converter, peak memory).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    speed = [sys.executable, str(HERE / "distill_speed.py"), "--scale", *(["--quick"] if quick else [])]
    profile = [sys.executable, str(HERE / "pipeline_profile.py"), "--fast", *(["--quick"] if quick else [])]
    for cmd in (speed, profile):
        print(f"$ {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd[1:])}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            return 1
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
