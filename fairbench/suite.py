"""Suite files: schema (pydantic), `include:`, `--set` overrides, and checks against the registries.

Every error names the file, the line and the key, and suggests the closest valid name.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fairbench.errors import FairbenchError, did_you_mean
from fairbench.expressions import Expression
from fairbench.table_spec import ReportTable, table_from_mapping
from fairbench.yamlio import Lines, load_yaml, locate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


# A seed as numpy takes it: a plain integer (not `true`) in [0, 2**32).
Seed = Annotated[int, Field(strict=True, ge=0, lt=2**32)]
# A suite's name is its results folder's name under results/: a plain word, no path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# What `report:` may hold (read by fairbench.report).
# Includes a suite may pull in, in all (diamonds counted each time).
MAX_INCLUDES = 50


class ExperimentSpec(_Strict):
    """One dataset task: which data, split protocol, target and sensitive group(s).

    `target` and `sensitive` are boolean expressions or bare class columns; `sensitive` may list
    several attributes. `bias` names the bias attribute of the aligned / conflicting accuracies
    (default: the dataset's `bias` column, where it has one)."""

    dataset: str
    target: str
    sensitive: str | list[str] = Field(min_length=1)
    protocol: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None
    bias: str | None = None

    @property
    def id(self) -> str:
        return self.name or f"{self.dataset}/{self.target}/{', '.join(self.sensitive_list)}"

    @property
    def sensitive_list(self) -> list[str]:
        return [self.sensitive] if isinstance(self.sensitive, str) else list(self.sensitive)


class MethodSpec(_Strict):
    """One method entry: fixed `params` and a `grid` whose product is expanded into jobs."""

    method: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    def points(self, budget: str) -> list[dict[str, Any]]:
        """The resolved parameters of every grid point, in grid order."""
        from fairbench.registry import METHODS

        cls = METHODS.get(self.method)
        names = list(self.grid)
        return [
            cls.resolve({**self.params, **dict(zip(names, point))}, budget)
            for point in itertools.product(*(self.grid[n] for n in names))
        ]


class SlurmSpec(_Strict):
    """`execution.slurm`: what `--executor slurm` asks for, per array task (one work unit)."""

    partition: str | None = None
    time: int = Field(60, gt=0)  # minutes
    gpus: int | None = Field(None, ge=0)  # None: 1 with --device cuda, else 0
    cpus: int = Field(1, gt=0)
    mem_gb: float | None = Field(None, gt=0)
    # submitit's cluster: None detects SLURM; `local` and `debug` run on this machine (tests).
    cluster: Literal["slurm", "local", "debug"] | None = None


class ExecutionSpec(_Strict):
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)


class ReportSettings(_Strict):
    """`report:`: what `fairbench report` draws by default from this suite's results (recorded in
    the results store by `fairbench run`)."""

    pareto: list[tuple[str, str]] = Field(default_factory=list)  # metric pairs [x, y] of the Pareto fronts
    sweep: list[str] = Field(default_factory=list)  # parameters to draw metrics against
    sweep_metrics: list[str] = Field(default_factory=list)  # the metrics of those figures
    tables: list[Any] = Field(default_factory=list)  # ReportTable fields each (see check_suite)


class Suite(_Strict):
    name: str
    description: str = ""
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    # `seed`: each job's data (generated data, split) follows its model seed, so the spread over
    # seeds includes the split's; an int fixes the data for every model seed.
    split_seed: Seed | Literal["seed"] = "seed"
    experiments: list[ExperimentSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    budget: str = "paper"
    # auto: stack sweep members where it pays (GPU), one by one elsewhere; on | off force it.
    stack: Literal["auto", "on", "off"] = "auto"
    # The arithmetic of training (a job's id and a column of the results): fp32, tf32 matmuls on
    # CUDA, or bf16 autocast with fp32 master weights. Not yet checked against fp32 on a GPU.
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    # Compile the training steps (torch.compile; CUDA graphs on a GPU): how to run, not what (no
    # part of a job's id); numbers move by rounding only.
    compile: bool = False
    report: ReportSettings = Field(default_factory=ReportSettings)
    # How to run, not what: no part of any job's identity.
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    def split_seed_of(self, seed: int) -> int:
        """The seed of the data and split that a job of model seed `seed` uses."""
        return seed if self.split_seed == "seed" else self.split_seed

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(
                "a suite's name names its folder under results/: letters, digits, '_', '-' and '.', starting "
                "with a letter or digit (choose another folder with --results)"
            )
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        repeated = sorted({seed for seed in value if value.count(seed) > 1})
        if repeated:
            raise ValueError(f"seed {repeated[0]} is given twice; each seed runs once")
        return value

    @field_validator("stack", mode="before")
    @classmethod
    def _stack_from_bool(cls, value: Any) -> Any:
        """`stack: true | false` (older suites; YAML also reads on/off as booleans) -> on | off."""
        return {True: "on", False: "off"}[value] if isinstance(value, bool) else value


_MODELS: dict[str, type[BaseModel]] = {"experiments": ExperimentSpec, "methods": MethodSpec}


def _merge(base: Any, over: Any) -> Any:
    """Deep-merge mappings (the including file wins); anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


def _load_with_includes(
    path: Path, lines: Lines, seen: tuple[Path, ...] = (), count: list[int] | None = None
) -> dict[str, Any]:
    path = path.resolve()
    count = [0] if count is None else count
    if path in seen:
        raise FairbenchError(f"{path}: include cycle ({' -> '.join(p.name for p in (*seen, path))})")
    data, own_lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FairbenchError(f"{path}:1: a suite must be a mapping of keys (name, experiments, methods, ...)")
    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    where = locate(own_lines, ("include",), str(path))
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        raise FairbenchError(f"{where}: include: give a file name or a list of file names (got {includes!r})")
    merged: dict[str, Any] = {}
    for include in includes:
        count[0] += 1
        if count[0] > MAX_INCLUDES:
            raise FairbenchError(f"{where}: more than {MAX_INCLUDES} includes in all; a suite includes fewer")
        target = (path.parent / include).resolve()
        if not target.exists():
            raise FairbenchError(f"{where}: include: file '{include}' not found (looked in {path.parent})")
        merged = _merge(merged, _load_with_includes(target, lines, (*seen, path), count))
    lines.update(own_lines)
    return _merge(merged, data)


def apply_override(data: dict[str, Any], assignment: str, lines: Lines) -> None:
    """Apply one `--set key.sub=value` (value parsed as YAML; list indices as numbers)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise FairbenchError(f"--set '{assignment}': expected KEY=VALUE, e.g. --set seeds=[0]")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise FairbenchError(f"--set '{assignment}': the value is not valid YAML") from None
    parts: list[Any] = [int(p) if p.isdigit() else p for p in key.split(".")]
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            if isinstance(node, dict) and isinstance(part, str):
                node = node.setdefault(part, {})
            else:
                raise FairbenchError(
                    f"--set '{assignment}': '{'.'.join(map(str, parts[: depth + 1]))}' not found"
                ) from None
    try:
        node[parts[-1]] = value
    except (IndexError, TypeError):
        raise FairbenchError(f"--set '{assignment}': cannot set '{key}'") from None
    prefix = tuple(parts)
    for path in [p for p in lines if p[: len(prefix)] == prefix]:
        del lines[path]  # the file's lines for what the override replaced no longer apply
    lines[prefix] = (f"--set {assignment}", 0)


def _model_at(path: tuple[Any, ...]) -> type[BaseModel]:
    """The model that holds the keys at `path` (for "did you mean" among its fields)."""
    model: type[BaseModel] = Suite
    for part in path:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if part in _MODELS:
            model = _MODELS[part]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return model


def _pydantic_error(error: ValidationError, lines: Lines, file: str) -> FairbenchError:
    """One line per schema error, each naming the file, line and key."""
    problems = []
    for problem in error.errors():
        loc = tuple(problem["loc"])
        where = locate(lines, loc, file)
        key = ".".join(map(str, loc)) or "(top level)"
        if problem["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            problems.append(f"{where}: unknown key '{key}'{did_you_mean(str(loc[-1]), model.model_fields)}")
        elif problem["type"] == "missing":
            problems.append(f"{where}: missing required key '{key}'")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {key}: {message} (got {problem.get('input')!r})")
    return FairbenchError("\n".join(problems))


def load_suite(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Suite, Lines]:
    """Read, merge, override and validate a suite file (schema and registry checks)."""
    path = Path(path)
    if not path.exists():
        raise FairbenchError(f"suite file '{path}' not found")
    lines: Lines = {}
    data = _load_with_includes(path, lines)
    for assignment in overrides:
        apply_override(data, assignment, lines)
    data.setdefault("name", path.stem)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as error:
        raise _pydantic_error(error, lines, str(path)) from None
    check_suite(suite, lines, str(path))
    return suite, lines


def check_suite(suite: Suite, lines: Lines, file: str) -> None:
    """Check names against the registries: datasets, protocols, options, columns, methods,
    parameters, budgets and grids. Every problem found is reported, one line each."""
    from fairbench.registry import DATASETS, METHODS

    problems: list[str] = []

    def fail(path: tuple[Any, ...], message: str) -> None:
        problems.append(f"{locate(lines, path, file)}: {message}")

    for i, exp in enumerate(suite.experiments):
        at = ("experiments", i)
        if exp.dataset not in DATASETS:
            fail((*at, "dataset"), f"unknown dataset '{exp.dataset}'{did_you_mean(exp.dataset, DATASETS.names())}")
            continue
        try:
            dataset = DATASETS.get(exp.dataset)(None, **exp.options)
            dataset.check_protocol(exp.protocol)
        except FairbenchError as error:
            fail((*at, "options" if exp.options else "protocol"), str(error))
            continue
        columns = dataset.column_names()
        roles = [
            (("target",), exp.target),
            *(
                (("sensitive", j) if isinstance(exp.sensitive, list) else ("sensitive",), text)
                for j, text in enumerate(exp.sensitive_list)
            ),
        ]
        if exp.bias is not None:
            roles.append((("bias",), exp.bias))
        for key, text in roles:
            try:
                Expression(text).validate(columns, f"{key[0]}: ")
            except FairbenchError as error:
                listing = f"`fairbench data describe {exp.dataset} --columns` lists them with types and examples"
                fail((*at, *key), f"dataset '{exp.dataset}' {error}; {listing}")
    for i, spec in enumerate(suite.methods):
        at = ("methods", i)
        if spec.method not in METHODS:
            fail((*at, "method"), f"unknown method '{spec.method}'{did_you_mean(spec.method, METHODS.names())}")
            continue
        cls = METHODS.get(spec.method)
        for name, values in spec.grid.items():
            if name not in cls.hparams:
                fail(
                    (*at, "grid", name),
                    f"method '{spec.method}' has no parameter '{name}'{did_you_mean(name, cls.hparams)}",
                )
                continue
            if not values:
                fail((*at, "grid", name), f"grid '{name}' is empty; give at least one value")
            typed = []
            for j, value in enumerate(values):
                try:
                    typed.append(cls.hparams[name].coerce(value, f"grid.{name}"))
                except FairbenchError as error:
                    fail((*at, "grid", name, j), str(error))
                    continue
                if typed[-1] in typed[:-1]:
                    fail((*at, "grid", name, j), f"grid '{name}' lists {value!r} twice; each value runs once")
        for name, value in spec.params.items():
            if name in spec.grid:
                fail((*at, "params", name), f"'{name}' is in both params and grid; keep one")
                continue
            try:
                cls.resolve({name: value}, suite.budget)
            except FairbenchError as error:
                fail((*at, "params", name), str(error))
    known = [spec for spec in suite.methods if spec.method in METHODS]
    budgets = {"paper"}.union(*(METHODS.get(spec.method).budgets for spec in known))
    if suite.budget not in budgets:
        suggestion = did_you_mean(suite.budget, budgets)
        fail(("budget",), f"no method of this suite has a budget '{suite.budget}'{suggestion}")
    ids = [exp.id for exp in suite.experiments]
    for index, exp_id in enumerate(ids):
        if ids.index(exp_id) != index:
            fail(("experiments", index), f"experiment '{exp_id}' appears twice; give each a distinct 'name'")
    labels = [spec.label or spec.method for spec in suite.methods]
    for name in sorted({label for label in labels if labels.count(label) > 1}):
        fail(
            ("methods", labels.index(name)), f"label '{name}' is used by several methods; give each a distinct 'label'"
        )
    if not problems:  # comparing jobs needs every method's parameters valid
        _check_same_jobs(suite, labels, fail)
    _check_report(suite, fail)
    if problems:
        raise FairbenchError("\n".join(problems))


def suite_tables(suite: Suite) -> list[ReportTable]:
    """The tables the suite declares under `report: {tables: [...]}` (checked by `check_suite`)."""
    return [table_from_mapping(entry) for entry in suite.report.tables]


def _check_report(suite: Suite, fail: Callable[[tuple[Any, ...], str], None]) -> None:
    """`report:`: metrics that are registered, swept parameters that a method of the suite has,
    and tables that are valid ReportTables reading registered metrics."""
    from fairbench import metrics
    from fairbench.registry import METHODS

    named = [
        (("report", "pareto", i, j), name) for i, pair in enumerate(suite.report.pareto) for j, name in enumerate(pair)
    ]
    named += [(("report", "sweep_metrics", i), name) for i, name in enumerate(suite.report.sweep_metrics)]
    for where, name in named:
        try:
            metrics.get(name)
        except FairbenchError as error:
            fail(where, f"{'.'.join(map(str, where))}: {error}")
    params = {name for spec in suite.methods if spec.method in METHODS for name in METHODS.get(spec.method).hparams}
    for index, name in enumerate(suite.report.sweep):
        if name not in params:
            fail(
                ("report", "sweep", index),
                f"report.sweep: no method of this suite has a parameter '{name}'{did_you_mean(name, params)}",
            )
    for index, entry in enumerate(suite.report.tables):
        at: tuple[Any, ...] = ("report", "tables", index)
        try:
            spec = table_from_mapping(entry)
        except ValueError as error:
            key = next((k for k in entry if f"'{k}'" in str(error)), None) if isinstance(entry, dict) else None
            fail((*at, key) if key else at, f"report.tables[{index}]: {error}")
            continue
        read = [(name, (*at, "metrics", name) if spec.metrics else (*at, "metric")) for name in spec.metric_names]
        read += [
            (name, (*at, "select") if name == spec.select else (*at, "subject_to", name))
            for name in spec.selection_metrics
        ]
        for name, where in read:
            try:
                metrics.get(name)
            except FairbenchError as error:
                fail(where, f"report.tables[{index}]: {error}")


def _check_same_jobs(suite: Suite, labels: list[str], fail: Callable[[tuple[Any, ...], str], None]) -> None:
    """Two entries that differ only by label would be the same jobs (a label is not part of a
    job's identity), and one label's rows would silently vanish: an error naming both."""
    points = [spec.points(suite.budget) for spec in suite.methods]
    for j, spec in enumerate(suite.methods):
        for i in range(j):
            if suite.methods[i].method == spec.method and any(p in points[i] for p in points[j]):
                fail(
                    ("methods", j),
                    f"methods '{labels[i]}' and '{labels[j]}' are the same jobs (same method and parameters; "
                    f"a label does not make a job): remove one or change its parameters",
                )
