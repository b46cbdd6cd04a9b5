"""Study specs: a study's runs from a spec file (tasks/*.toml) or a grid of options.

    seqvg run tasks/demo.toml --set steps=300      # load_spec, with overrides
    seqvg sweep --cells rnn,lstm --lengths 50,100   # grid_study

A spec names run options at the top level (the base of every run), a
``[grid]`` of option lists whose product is run, optional ``[[variant]]``
tables (named option sets, crossed with the grid), the seeds, where the runs
and the report go, and ``[expect]`` tables (seqvg.expect). Parsing gives a
``Study``: every run's resolved ``RunConfig`` and its directory name; a
mistake is a ``SpecError`` naming file, line and key. ``seqvg.study`` runs a
Study and ``seqvg.results`` gathers what its runs came to.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from seqvg.config import MAX_SEED, ConfigError, RunConfig, absolute_cell_spec, cell_label, is_custom_cell

#: Spec keys that are not run options.
STUDY_KEYS = {"name", "description", "seeds", "probe_only", "out", "report", "grid", "variant", "expect"}
_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
#: Run options a spec may set (the seed comes from ``seeds``).
OPTION_KEYS = set(_FIELDS) - {"seed"}


class SpecError(ValueError):
    """A spec that cannot be run; the message names file, line and key."""


@dataclass(frozen=True)
class Study:
    """A parsed study: the runs' configs, their directory names and outputs."""

    name: str
    configs: tuple[RunConfig, ...]
    run_names: tuple[str, ...]
    out: Path
    report: Path | None
    probe_only: bool = False
    description: str = ""
    command: str | None = None  # recorded in every run's config.json
    expectations: tuple = ()  # seqvg.expect.Expectation: the spec's [expect] tables

    def run_dirs(self) -> list[Path]:
        """Every run's directory, in spec order."""
        return [self.out / n for n in self.run_names]


def study_labels(study: Study) -> list:
    """Every run's RunLabel (seqvg.labels), computed over all the study's runs:
    the names its report gives them."""
    from seqvg.labels import run_labels

    return run_labels([c.to_dict() for c in study.configs], list(study.run_names))


def label_of(study: Study, index: int) -> str:
    """A run's label as the report names it, e.g. "rnn T=50 s1"."""
    return study_labels(study)[index].label


# -- parsing ------------------------------------------------------------------
def _line_of(text: str, key: str, table: str | None, index: int = 0) -> int | None:
    """1-based line of ``key = ...`` in ``[table]`` (or the top level), if found.

    ``index`` picks the n-th ``[[table]]`` for arrays of tables. A key missing
    from a table points at the table's header line instead.
    """
    current, seen, header_line = None, -1, None
    for i, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?", stripped)
        if header:
            current = header.group(1)
            if current == table:
                seen = seen + 1 if stripped.startswith("[[") else 0
                if seen == index:
                    header_line = i
            continue
        if current == table and (table is None or seen == index) and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return i
    return header_line


class _Where:
    """Builds 'file:line: key' prefixes for messages."""

    def __init__(self, path: str, text: str):
        self.path, self.text = path, text

    def __call__(self, key: str, table: str | None = None, index: int = 0) -> str:
        line = _line_of(self.text, key, table, index)
        shown = f"[{table}] {key}" if table else key
        return f"{self.path}:{line}: {shown}" if line else f"{self.path}: {shown}"


def _check_type(name: str, value, where: str):
    """Checks a TOML value against the RunConfig field's type."""
    kind = str(_FIELDS[name].type)
    base = kind.split("|")[0].strip()
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, dict),  # task_args: a [task_args] table or an inline {key = value}
    }[base]
    if not ok:
        raise SpecError(f"{where}: expected {base}, got {type(value).__name__} {value!r}")
    return float(value) if base == "float" else value


def _unknown(key: str, table_name: str | None) -> str:
    """"unknown option", with where the key belongs when it is the study's own
    (seeds, out, ... set once at the top) or the seed, which a study sets."""
    if key == "seed":
        return "unknown option; the seed is set by 'seeds' at the top of the spec (seeds = 3, or seeds = [0, 7])"
    if key in STUDY_KEYS and table_name:
        return (f"unknown option; '{key}' is the study's, set once at the top of the spec, not in "
                f"[{table_name}]")
    return "unknown option"


def _options(table: dict, where, table_name: str | None, index: int = 0, skip=()) -> dict:
    out = {}
    for key, value in table.items():
        if key in skip:
            continue
        if key not in OPTION_KEYS:
            raise SpecError(f"{where(key, table_name, index)}: {_unknown(key, table_name)}")
        out[key] = _check_type(key, value, where(key, table_name, index))
    return out


def _seeds(value, where) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SpecError(f"{where('seeds')}: must be at least 1, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        bad = [s for s in value if not 0 <= s <= MAX_SEED]
        if bad:
            raise SpecError(f"{where('seeds')}: a seed must be between 0 and {MAX_SEED}, got {bad[0]}")
        return list(value)
    raise SpecError(f"{where('seeds')}: expected a count (int) or a non-empty list of ints, got {value!r}")


def _value_name(key: str, value) -> str:
    if key == "cell":
        return cell_label(str(value))
    if key == "length":
        return f"T{value}"
    if isinstance(value, dict):  # task_args; {} (the task's defaults) made the name "-s0", read as an option
        return "-".join(f"{k}{v}" for k, v in sorted(value.items())) or "task-defaults"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{key.replace('_', '-')}{text}"


def _shown(value) -> str:
    """A grid value as a spec writes it: {symbols = 3} as "{symbols = 3}", not Python's dict."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {v}" for k, v in sorted(value.items())) + "}"
    return str(value)


def expand(base: dict, grid: dict[str, list], variants: list[tuple[str, dict]], seeds: list[int]):
    """The product variants x grid x seeds as (run name, RunConfig) pairs.

    Raises:
        ConfigError: a combination of options is invalid (names the option).
    """
    keys = list(grid)
    # The same grid value (as a run's name shows it) or seed twice would
    # make two runs of one directory: a typo, refused rather than run twice.
    for key, values in [*grid.items(), ("seeds", seeds)]:
        names = [_value_name(key, v) if key != "seeds" else str(v) for v in values]
        for name in dict.fromkeys(n for n in names if names.count(n) > 1):
            same = {}  # one cell file spelt two ways is one cell, given twice
            for v, n in zip(values, names):
                if n == name:
                    same.setdefault(absolute_cell_spec(v) if key == "cell" and is_custom_cell(v) else
                                    _shown(v) if isinstance(v, dict) else v, _shown(v))
            if len(same) > 1:  # two custom cells of one class name: one run directory
                raise ConfigError(f"{' and '.join(same.values())} would share the run name {name} (a custom "
                                  "cell's runs are named by its class): give the classes different names (or, in a "
                                  "spec, put each in a [[variant]] with a label of its own)", key)
        twice = sorted({_shown(v) for v, n in zip(values, names) if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{', '.join(twice)} given more than once", key)
    if "cell" in grid and base.get("cell_args") and not any(
            is_custom_cell(str(c)) for c in [*grid["cell"], *(o.get("cell", "") for _, o in variants)]):
        # Each built-in cell's run drops the arguments: with no custom cell at all they were a mistake.
        raise ConfigError(f"--cell-arg is for custom cells (module:Class, file.py:Class); none of "
                          f"{', '.join(map(str, grid['cell']))} is one", "cell_args")
    out = []
    for label, opts in variants or [("", {})]:
        for values in itertools.product(*(grid[k] for k in keys)):
            for seed in seeds:
                d = {**base, **opts, **dict(zip(keys, values)), "seed": seed}
                if "cell" in keys and not is_custom_cell(d["cell"]):
                    d.pop("cell_args", None)  # a grid of cells: the arguments are the custom cells'
                cfg = RunConfig(**d).resolved()
                parts = ([label] if label else []) + [_value_name(k, v) for k, v in zip(keys, values)]
                out.append(("-".join(parts + [f"s{seed}"]), cfg))
    return out


def parse_spec(text: str, path: str = "<spec>", overrides: dict | None = None, out: Path | None = None,
               report: Path | None = None, seeds: int | None = None) -> Study:
    """Parses a spec's text; ``overrides`` replace options in every run.

    ``seeds`` (N) runs every point with seeds 0..N-1 instead of the spec's
    own: the same runs with more (or fewer) seeds, so its [expect] tables
    still apply, checked on the measured seeds that run.

    Raises:
        SpecError: with file, line and key.
    """
    where = _Where(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    name = doc.get("name", Path(path).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        if "name" not in doc:
            raise SpecError(f"{path}: the study is named after the file, {name!r}, which is not a simple name "
                            "(letters, digits, _ . -); add name = \"...\" to the spec or rename the file")
        raise SpecError(f"{where('name')}: expected a simple name (letters, digits, _ . -), got {name!r}")
    for key in ("out", "report", "description"):
        if key in doc and (not isinstance(doc[key], str) or (key != "description" and not doc[key].strip())):
            raise SpecError(f"{where(key)}: expected a {'text' if key == 'description' else 'path'} "
                            f"(a non-empty string), got {doc[key]!r}")
    base = _options({k: v for k, v in doc.items() if k not in STUDY_KEYS}, where, None)
    grid_doc = doc.get("grid", {})
    if not isinstance(grid_doc, dict):
        raise SpecError(f"{where('grid')}: expected a table [grid]")
    grid = {}
    for key, values in grid_doc.items():
        if key not in OPTION_KEYS:
            raise SpecError(f"{where(key, 'grid')}: {_unknown(key, 'grid')}")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where(key, 'grid')}: expected a non-empty list of values, got {values!r}")
        grid[key] = [_check_type(key, v, where(key, "grid")) for v in values]
    variants = []
    raw_variants = doc.get("variant", [])
    if not isinstance(raw_variants, list):
        raise SpecError(f"{where('variant')}: expected [[variant]] tables")
    for i, v in enumerate(raw_variants):
        if not isinstance(v, dict):
            raise SpecError(f"{where('variant')}: expected [[variant]] tables, got {v!r}")
        label = v.get("label")
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.+=-]+", label):
            raise SpecError(f"{where('label', 'variant', i)}: each [[variant]] needs a label "
                            f"(letters, digits, _ . + = -), got {label!r}")
        variants.append((label, _options(v, where, "variant", i, skip=("label",))))
    labels = [label for label, _ in variants]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{path}: [[variant]] labels must differ, got {labels}")
    # A cell file's path is relative to the spec file.
    base_dir = Path(path).parent
    for opts, table, index in [(base, None, 0), *((o, "variant", i) for i, (_, o) in enumerate(variants))]:
        if isinstance(opts.get("cell"), str) and is_custom_cell(opts["cell"]):
            opts["cell"] = _spec_cell(opts["cell"], base_dir, where("cell", table, index))
    if "cell" in grid:
        grid["cell"] = [_spec_cell(c, base_dir, where("cell", "grid")) if is_custom_cell(c) else c
                        for c in grid["cell"]]
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise SpecError(f"--seeds: must be at least 1, got {seeds!r}")
        seeds = list(range(seeds))
    else:
        seeds = _seeds(doc.get("seeds", 1), where)
    probe_only = doc.get("probe_only", False)
    if not isinstance(probe_only, bool):
        raise SpecError(f"{where('probe_only')}: expected true or false")
    for key, value in (overrides or {}).items():
        if key not in OPTION_KEYS:
            instead = {"seed": "--seeds N", "seeds": "--seeds N", "out": "--out", "report": "--report"}.get(key)
            raise SpecError(f"--set {key}: unknown option" + (f"; use {instead}" if instead else "")
                            + ("" if instead or key not in STUDY_KEYS else "; --set takes run options only"))
        value = _check_type(key, value, f"--set {key}")
        base[key] = value
        grid.pop(key, None)
        for _, opts in variants:
            opts.pop(key, None)
    # A run's options are base, then its variant's, then the grid's: a key in
    # both a [[variant]] and [grid] would have the grid replace the variant's
    # value in every run, the variant's label then naming runs it did not shape.
    for i, (label, opts) in enumerate(variants):
        for key in opts:
            if key in grid:
                raise SpecError(f"{where(key, 'variant', i)}: also in [grid], whose values would replace "
                                f"variant {label}'s {key} = {opts[key]!r} in every run; set {key} in the grid or "
                                "in the variants, not both")
    try:
        runs = expand(base, grid, variants, seeds)
    except ConfigError as e:
        key = e.option or ""
        loc = where(key, "grid") if key in grid else where(key)
        for i, (_, opts) in enumerate(variants):
            if key not in grid and key in opts:
                try:
                    expand(base, grid, [variants[i]], seeds)
                except ConfigError:
                    loc = where(key, "variant", i)  # the first [[variant]] that fails
                    break
        if key in (overrides or {}):
            loc = f"--set {key}"
        raise SpecError(f"{loc}: {e}") from None
    # TOML has no shell to expand "~": a spec's "~/runs" means the home directory, not a directory named "~".
    out_dir = out or Path(doc.get("out", f"runs/{name}")).expanduser()
    report_path = report or Path(doc.get("report", f"reports/{name}.pdf")).expanduser()
    # The spec's own paths, checked as click checks --out and --report: a
    # mistake in the spec (exit 2, its line), not a fault of the system (1).
    if out is None and "out" in doc and out_dir.exists() and not out_dir.is_dir():
        raise SpecError(f"{where('out')}: {out_dir} is a file; out is the directory of the runs")
    if report is None and "report" in doc and report_path.is_dir():
        raise SpecError(f"{where('report')}: {report_path} is a directory; report is the PDF to write, "
                        f"e.g. {report_path / (name + '.pdf')}")
    from seqvg.expect import ExpectError, parse_expect, points

    expectations = ()
    if not overrides:  # they describe the spec's own runs; --set makes other runs (and points)
        try:
            expectations = parse_expect(doc.get("expect"), points([n for n, _ in runs], [c.seed for _, c in runs]),
                                        probe_only, where)
        except ExpectError as e:
            raise SpecError(str(e)) from None
    return Study(name, tuple(c for _, c in runs), tuple(n for n, _ in runs), Path(out_dir), Path(report_path),
                 probe_only, str(doc.get("description", "")), expectations=expectations)


def _spec_cell(cell: str, base_dir: Path, where: str) -> str:
    from seqvg.config import absolute_cell_spec

    try:
        return absolute_cell_spec(cell, base_dir)
    except ConfigError as e:
        raise SpecError(f"{where}: {e}") from None


def load_spec(path: str | os.PathLike, **kwargs) -> Study:
    """Reads and parses a spec file (see ``parse_spec``)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read ({e})") from None
    return parse_spec(text, str(path), **kwargs)


def grid_study(name: str, grid: dict[str, list], seeds: int, options: dict, out: Path,
               report: Path | None = None, command: str | None = None) -> Study:
    """The study of every grid point x seed over the other options (``seqvg compare``, ``sweep``).

    Args:
        name: the study's name, e.g. "sweep".
        grid: option -> its values, e.g. ``{"cell": ["rnn", "lstm"], "length": [50, 100]}``.
        seeds: runs per grid point, seeded ``options["seed"]`` (default 0) onwards.
        options: the other run options (``RunConfig`` fields); a grid option
            or the seed given here is replaced by the grid's values and seeds.
        out: the directory of the runs; report: the PDF to write, if any.
        command: the command line recorded in every run's config.json.

    Raises:
        ConfigError: naming the option (a grid option when one of its values is bad).
    """
    for key, values in grid.items():
        if key not in OPTION_KEYS:
            raise ConfigError(f"unknown option {key!r}", key)
        if not values:
            raise ConfigError("no values given", key)
    if seeds < 1:
        raise ConfigError(f"must be positive, got {seeds}", "seeds")
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}", unknown[0])
    first = options.get("seed", 0)
    if isinstance(first, int) and 0 <= first <= MAX_SEED < first + seeds - 1:
        raise ConfigError(f"seeds {first}..{first + seeds - 1} run past the largest --seed, {MAX_SEED}", "seeds")
    base = {k: v for k, v in options.items() if k not in grid and k != "seed"}
    runs = expand(base, grid, [], list(range(first, first + seeds)))
    return Study(name, tuple(c for _, c in runs), tuple(n for n, _ in runs), Path(out),
                 None if report is None else Path(report), command=command)


def parse_assignments(items, *, dashes: bool = True, identifiers: bool = False, empty: bool = True) -> dict:
    """``KEY=VALUE`` texts (``--set``, ``--cell-arg``, ``--task-arg``) as a dict.

    VALUE is read as a TOML value (``3`` an int, ``1e-3`` a float, ``true``,
    ``"x"``, ``[1, 2]``); anything else is kept as the text (``relu``), except
    Python's ``True``/``False``/``None`` and a broken array, table or quoted
    string, which are errors (as text they would pass silently).

    Args:
        items: the texts, e.g. ``["steps=300", "lr=1e-3"]``.
        dashes: KEY may be spelled with dashes (``eval-every``: run options).
        identifiers: each KEY must be a Python name (a constructor's argument).
        empty: VALUE may be empty (then it is the empty text).

    Raises:
        ValueError: naming the first item that is not of that form.
    """
    if identifiers:
        for item in items:
            if not item.partition("=")[0].strip().isidentifier():
                raise ValueError(f"expected KEY=VALUE with KEY an argument name, got {item!r}")
    out, seen = {}, {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_") if dashes else key.strip()
        if not sep or not key or (not empty and not value.strip()):
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        text = value.strip()
        if key in out:
            # The last would win without a word: vocab=8 and vocab=16 typed, 16 used.
            raise ValueError(f"{key} given more than once ({item!r} after {key}={seen[key]}); give it once")
        seen[key] = text
        if text in _PYTHON_WORDS:
            # Kept as text, "False" would be a true value: say how TOML spells it.
            raise ValueError(f"{item!r}: {_PYTHON_WORDS[text]}")
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as e:
            if text and text[0] in "[{\"'":  # meant as an array, a table or a quoted string: not silently text
                raise ValueError(f"{item!r}: not a TOML value ({e})") from None
            out[key] = text
    return out


def format_assignment(key: str, value) -> str:
    """``KEY=VALUE`` that ``parse_assignments`` reads back as ``{key: value}``.

    The inverse for a command seqvg prints (``--task-arg``, ``--cell-arg``):
    ``str(value)`` would give Python's ``True`` (refused), ``{'a': 1}`` (not
    TOML) and, for the text ``"3"``, a number.
    """
    return f"{key}={_toml_value(value, top=True)}"


def _toml_value(value, top: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A bare word where parse_assignments keeps it as text (relu), else a quoted TOML string.
        if top and value == value.strip() and value and value not in _PYTHON_WORDS and value[0] not in "[{\"'#":
            try:
                tomllib.loads(f"v = {value}")
            except tomllib.TOMLDecodeError:
                return value
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML spelling for {type(value).__name__} {value!r}")


#: Python's spellings that TOML does not read: as text they would pass silently ("False" is true).
_PYTHON_WORDS = {"True": "TOML spells it true", "False": "TOML spells it false",
                 "None": "TOML has no None: leave it out to get the default"}
