"""Pooling of the epoch's training metrics across torchrun ranks (two real gloo processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

# Each rank's sums and row counts; rank 1 never saw the lidar-only subset, rank 0 no camera-only one.
RANK_SCRIPT = """
import json, os, sys
import torch, torch.distributed as dist
from m2vae_ros.trainer import LossMeans
from m2vae_training.distributed import pool_tables

dist.init_process_group("gloo")
rank = dist.get_rank()
tables = [
    {"loss": (10.0, 4), "lidar/kl": (3.0, 2)},
    {"loss": (30.0, 6), "camera/kl": (8.0, 4)},
]
pooled = LossMeans.from_table(pool_tables(tables[rank], torch.device("cpu"))).means()
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(pooled, f)
dist.destroy_process_group()
"""


def test_ranks_pool_their_sums_including_keys_only_one_rank_saw(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(RANK_SCRIPT)
    result = subprocess.run(
        [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {"loss": 4.0, "elbo": -4.0, "lidar/kl": 1.5, "camera/kl": 2.0}  # (10 + 30) / (4 + 6), ...
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
