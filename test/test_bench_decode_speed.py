"""bench/decode_speed.py still decodes every case it times (a codec or simulator change could break one)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_decode_speed_bench_times_every_codec_against_the_rgb8_decode():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "decode_speed.py"), "--repeats", "2",
                             "--size", "64x48"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    rows = table[2:]  # below the header and its separator
    names = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert names == ["rgb8 image", "JPEG image", "16UC1 depth", "compressedDepth PNG", "LaserScan",
                     "PointCloud2 16 rings"]
    assert rows[0].endswith("| 1.00 |")
