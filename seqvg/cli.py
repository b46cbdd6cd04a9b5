"""The command line: the ``seqvg`` group, holding every command.

    seqvg --help
    seqvg train --task adding --cell gru --length 100
    seqvg run tasks/demo.toml

Commands live by what they serve: ``cli_runs`` (train, probe, generate,
tasks: one run and its data), ``cli_reports`` (report, diagnose: reading run
directories), ``cli_studies`` (run, compare, sweep: many runs), with the
options they share in ``cli_options``. Each is a thin layer over seqvg's
importable functions. Here: the group, which imports TensorFlow quietly for
the commands that need it and turns operating-system faults into one-line
errors (exit 1).
"""

from __future__ import annotations

import sys

import click

from seqvg.cli_options import os_error_message
from seqvg.cli_reports import diagnose, report
from seqvg.cli_runs import generate, probe, tasks_command, train
from seqvg.cli_studies import compare, run_spec, sweep
from seqvg.tfsetup import import_tensorflow_quietly

_TF_COMMANDS = {"train", "probe", "compare", "run", "sweep"}

class _Group(click.Group):
    """Turns operating-system faults (disk full, read-only, no permission)
    into one-line errors with exit status 1 instead of tracebacks, and Ctrl-C
    anywhere into exit status 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as e:
            raise click.ClickException(os_error_message(e)) from None
        except KeyboardInterrupt:
            # train and the studies say 130 for Ctrl-C; one pressed while
            # TensorFlow loads or a cell is checked (before their own handler)
            # was click's "Aborted!" with 1, the status of a fault.
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="seqvg")
@click.pass_context
def cli(ctx):
    """seqvg: see, measure and fix vanishing gradients in recurrent networks.

    \b
    seqvg train --cell gru --length 100      train one model, write runs/...
    seqvg probe --cell lstm --length 200     gradient norm per timestep at init
    seqvg diagnose runs/adding-gru-T100-s0   vanishing / exploding / healthy
    seqvg report runs/a runs/b -o r.pdf      multi-page PDF from run directories
    seqvg compare --cells rnn,lstm,gru       train several cells, one report
    seqvg sweep --lengths 50,100,200 -j 2    grid of cells x lengths x seeds
    seqvg run tasks/demo.toml                a ready-made study from tasks/
    seqvg generate adding -T 100 -n 64 -o b.npz   the data, for your own models
    seqvg tasks                              the tasks, their parameters and baselines
    """
    if ctx.invoked_subcommand in _TF_COMMANDS and "--help" not in sys.argv and "-h" not in sys.argv:
        try:
            import_tensorflow_quietly()
        except ModuleNotFoundError as e:
            if e.name != "tensorflow":
                raise
            raise click.ClickException(str(e)) from None


cli.add_command(train)
cli.add_command(probe)
cli.add_command(generate)
cli.add_command(tasks_command)
cli.add_command(report)
cli.add_command(diagnose)
cli.add_command(compare)
cli.add_command(run_spec)
cli.add_command(sweep)
