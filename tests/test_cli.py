"""The command line as a whole: commands, help, version, generate (no training).

Each command's own behaviour is tested beside its library code (train in
test_training.py, probe in test_probe.py, report and diagnose in
test_report.py, run and sweep in test_study.py, bad input in test_faults.py).
"""

import sys

import numpy as np
from click.testing import CliRunner

from seqvg import __version__
from seqvg.cli import cli
from seqvg.config import RunConfig
from seqvg.tasks import probe_batch

COMMANDS = {"tasks", "train", "probe", "diagnose", "report", "compare", "sweep", "run", "generate"}


def test_help_lists_every_command_with_an_example():
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    assert COMMANDS == set(cli.commands)
    for name in COMMANDS:
        assert f"  {name}" in r.output
        assert f"seqvg {name} " in r.output or name == "run"  # the group's examples
    assert "seqvg run tasks/demo.toml" in r.output


def test_every_command_has_help_without_tensorflow(monkeypatch):
    """--help answers without importing TensorFlow (seconds saved, and works before an install is complete)."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setattr(sys, "argv", ["seqvg", "x", "--help"])
    for name in sorted(COMMANDS):
        r = CliRunner().invoke(cli, [name, "--help"])
        assert r.exit_code == 0, (name, r.output)
        assert r.output.startswith(f"Usage: cli {name} ") or r.output.startswith(f"Usage: seqvg {name} ")


def test_version():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_unknown_command_is_a_usage_error():
    r = CliRunner().invoke(cli, ["trian"])
    assert r.exit_code == 2 and "No such command 'trian'" in r.output


def test_generate_writes_the_probe_batch_of_that_seed(tmp_path):
    out = tmp_path / "b.npz"
    r = CliRunner().invoke(cli, ["generate", "copy", "-T", "7", "-n", "5", "--seed", "3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = np.load(out)
    x, y = probe_batch(RunConfig(task="copy", length=7, probe_batch=5, seed=3))
    np.testing.assert_array_equal(d["x"], x)
    np.testing.assert_array_equal(d["y"], y)
    assert (str(d["task"]), int(d["length"]), int(d["seed"]), int(d["n"])) == ("copy", 7, 3, 5)
    assert f"wrote {out}: 5 samples of copy T=7" in r.output
    r = CliRunner().invoke(cli, ["generate", "copy", "-T", "7", "-n", "1", "-o", str(tmp_path / "one.npz")])
    assert r.exit_code == 0 and ": 1 sample of copy T=7" in r.output, r.output  # it said "1 samples"


def test_a_path_option_expands_the_home_tilde(tmp_path, monkeypatch):
    """``-o=~/b.npz`` (no space: the shell leaves the ~) means the home
    directory, as it would with a space, not a directory named ~."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    r = CliRunner().invoke(cli, ["generate", "copy", "-T", "7", "-n", "5", "--out=~/b.npz"])
    assert r.exit_code == 0, r.output
    assert (home / "b.npz").is_file() and not (work / "~").exists()


def test_an_empty_path_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["generate", "copy", "-T", "7", "-n", "5", "-o", ""], ["report", "runs", "-o", ""]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2 and "an empty path" in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_before_training_starts_exits_130(tmp_path, monkeypatch):
    """Ctrl-C while TensorFlow loads (the first seconds of `seqvg train`) was
    click's `Aborted!` with exit 1, a fault's status, though train's help
    says 130 for interrupted; now 130 there too, and nothing is written."""
    from seqvg import cli as cli_module

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_module, "import_tensorflow_quietly", interrupted)
    r = CliRunner().invoke(cli, ["train", "--cell", "rnn", "--length", "10", "--out", "run"])
    assert r.exit_code == 130 and "Interrupted." in r.output and "Aborted" not in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_a_file_option_ending_in_a_slash_is_a_usage_error(tmp_path, monkeypatch):
    """`seqvg generate ... -o newdir/` wrote a file named newdir (pathlib
    drops the slash), `report -o myreports/` a PDF named myreports."""
    monkeypatch.chdir(tmp_path)
    for args, name in ((["generate", "copy", "-T", "7", "-n", "5", "-o", "newdir/"], "newdir/"),
                       (["report", "runs", "-o", "myreports/"], "myreports/")):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2, r.output
        assert (f"Error: Invalid value for '--out' / '-o': {name}: a trailing '/' names a directory; give a "
                f"file's name (e.g. {name}FILE)") in r.output
    assert list(tmp_path.iterdir()) == []
