"""The benchmarks run end to end (tiny sizes) and print the documented JSON."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(BENCH / script), *args, "--json"],
                         capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_train_speed_json():
    result = _run("train_speed.py", "--cells", "rnn,lstm", "--length", "8", "--long-length", "0",
                  "--units", "8", "--batch", "4", "--repeats", "1", "--steps", "1", "--warmup", "1")
    assert result["matmul_peak_gflops"] > 0
    cells = {row["cell"]: row for row in result["cells"]}
    assert set(cells) == {"rnn", "lstm"}
    for row in cells.values():
        assert row["steps_per_s"] > 0 and row["gflops"] > 0
        assert "torch_steps_per_s" in row and "ratio_vs_torch" in row
    # GFLOP per step = steps/s x FLOP per step: LSTM does 4x the gate work of a vanilla RNN.
    per_step = {c: r["gflops"] / r["steps_per_s"] for c, r in cells.items()}
    assert abs(per_step["lstm"] / per_step["rnn"] - 4.0) < 1e-9


def test_probe_benchmark_json():
    result = _run("probe.py", "--cells", "gru", "--length", "8", "--mem-length", "16", "--units", "8",
                  "--batch", "4", "--repeats", "1")
    (row,) = result["cells"]
    assert row["cell"] == "gru" and row["probe_s"] > 0 and row["step_s"] > 0
