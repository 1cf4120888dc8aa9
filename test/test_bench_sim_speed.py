"""bench/sim_speed.py still runs against the simulator it measures (it broke when topics were added)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_sim_speed_bench_runs_on_a_short_recording():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "sim_speed.py"), "--duration", "0.5",
                             "--repeats", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "simulation / plain write:" in result.stdout
