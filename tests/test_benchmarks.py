"""The benchmarks run end to end (tiny sizes) and print the documented JSON."""

import importlib.util
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> dict:
    """``python benchmarks/SCRIPT ARGS --json`` in a process of its own: its JSON."""
    out = subprocess.run([sys.executable, str(BENCH / script), *args, "--json"],
                         capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def run_here(monkeypatch, capsys):
    """``python benchmarks/SCRIPT ARGS --json`` run in this process, as the
    interpreter runs a script (``__main__``, the script's directory first on
    sys.path, ARGS in sys.argv): its JSON. For the benchmarks that change no
    process-wide setting (train_speed.py sets TensorFlow's thread counts and
    numpy's, so it gets a process of its own): one TensorFlow import fewer,
    about 4 s of CPU each."""

    def run(script: str, *args: str) -> dict:
        monkeypatch.syspath_prepend(str(BENCH))
        monkeypatch.setattr(sys, "argv", [str(BENCH / script), *args, "--json"])
        capsys.readouterr()
        runpy.run_path(str(BENCH / script), run_name="__main__")
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    return run


def test_train_speed_json():
    result = _run("train_speed.py", "--cells", "rnn,lstm", "--length", "8", "--long-length", "0",
                  "--units", "8", "--batch", "4", "--repeats", "1", "--steps", "1", "--warmup", "1")
    assert result["matmul_peak_gflops"] > 0
    from seqvg import fastlstm

    assert result["fused_lstm_op"] == fastlstm.fused("float32")  # which LSTM step was timed
    cells = {row["cell"]: row for row in result["cells"]}
    assert set(cells) == {"rnn", "lstm"}
    for row in cells.values():
        assert row["steps_per_s"] > 0 and row["gflops"] > 0
        assert "torch_steps_per_s" in row and "ratio_vs_torch" in row
    # GFLOP per step = steps/s x FLOP per step: LSTM does 4x the gate work of a vanilla RNN.
    per_step = {c: r["gflops"] / r["steps_per_s"] for c, r in cells.items()}
    assert abs(per_step["lstm"] / per_step["rnn"] - 4.0) < 1e-9


def test_probe_benchmark_json_and_ratio_quartiles(run_here):
    # Its peak-memory figures still come from fresh processes (the script's own children).
    result = run_here("probe.py", "--cells", "gru,rnn", "--length", "6", "--mem-length", "8", "--units", "4",
                  "--batch", "2", "--repeats", "3")
    assert [row["cell"] for row in result["cells"]] == ["gru", "rnn"]
    for row in result["cells"]:
        assert row["probe_s"] > 0 and row["step_s"] > 0 and row["probe_peak_mib_T8"] > 0
        assert row["grad_ratio"] > 0 and row["why_ratio"] > 0  # the probe's two parts, timed alike
        q1, q3 = row["ratio_quartiles"]
        assert 0 < q1 <= row["ratio"] <= q3
    # Each cell timed in its own process, with seqvg train's threads for it:
    # one inter-op thread for the GRU on seqvg's op, TensorFlow's default (0) for the vanilla RNN.
    from seqvg import kernels

    threads = {row["cell"]: row["inter_op_threads"] for row in result["cells"]}
    assert threads == {"gru": 1 if kernels.op_module() is not None else 0, "rnn": 0}


def test_lstm_loop_benchmark_json(run_here):
    result = run_here("lstm_loop.py", "--lengths", "6", "--units", "4", "--batch", "2", "--repeats", "2", "--steps", "1")
    (row,) = result["rows"]
    assert row["length"] == 6 and row["seqvg_ms"] > 0 and row["keras_ms"] > 0
    q1, q3 = row["speedup_quartiles"]
    assert q1 <= row["speedup"] <= q3
    assert row["max_loss_diff"] < 1e-5  # the loops train the same model
    assert row["seqvg_first_step_s"] > 0 and row["keras_first_step_s"] > 0
    # Where seqvg's op runs, the TensorFlow-ops loop it replaces is timed too.
    assert result["fused_lstm_op"] == (row["tfops_ms"] is not None) == (row["op_speedup"] is not None)


def test_benchmarks_reject_bad_arguments_with_usage_errors():
    for script, args, message in [
        ("probe.py", ["--mem-length", "0"], "0 is not >= 1"),
        ("train_speed.py", ["--cells", "lstm,foo"], "unknown cell(s) foo"),
        ("torch_reference.py", ["--steps", "x"], "'x' is not an integer"),
        ("lstm_loop.py", ["--lengths", "200,0"], "expected comma-separated integers >= 1"),
    ]:
        out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (script, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch (benchmark-only extra) not installed")
def test_torch_reference_serves_timed_blocks():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "torch_reference.py"), "--cell", "gru", "--length", "5", "--units", "4",
         "--batch", "2", "--warmup", "1", "--serve"],
        input="2\n3\n", capture_output=True, text=True, check=True, timeout=120,
    )
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert lines[0] == {"ready": True}
    assert len(lines) == 3 and all(line["seconds_per_step"] > 0 for line in lines[1:])


def test_custom_cell_benchmark_json(run_here):
    result = run_here("custom_cell.py", "--length", "6", "--units", "4", "--batch", "4", "--repeats", "1",
                  "--steps", "1")
    assert set(result["ratios"]) >= {"custom_step/gru_step", "custom_probe/custom_step", "custom_norms/custom_step"}
    assert all(v > 0 for v in result["seconds"].values())
