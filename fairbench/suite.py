"""Suite files: schema (pydantic), `include:`, `--set` overrides, and checks against the registries.

Every error names the file, the line and the key, and suggests the closest valid name.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fairbench.errors import FairbenchError, did_you_mean
from fairbench.expressions import Expression
from fairbench.yamlio import Lines, load_yaml, locate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


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


class Suite(_Strict):
    name: str
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    # `seed`: each job's data (generated data, split) follows its model seed, so the spread over
    # seeds includes the split's; an int fixes the data for every model seed.
    split_seed: int | Literal["seed"] = "seed"
    experiments: list[ExperimentSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    budget: str = "paper"
    # auto: stack sweep members where it pays (GPU), one by one elsewhere; on | off force it.
    stack: Literal["auto", "on", "off"] = "auto"
    report: dict[str, Any] = Field(default_factory=dict)
    # How to run, not what: no part of any job's identity.
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    def split_seed_of(self, seed: int) -> int:
        """The seed of the data and split that a job of model seed `seed` uses."""
        return seed if self.split_seed == "seed" else self.split_seed

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


def _load_with_includes(path: Path, lines: Lines, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise FairbenchError(f"{path}: include cycle ({' -> '.join(p.name for p in (*seen, path))})")
    data, own_lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FairbenchError(f"{path}:1: a suite must be a mapping of keys (name, experiments, methods, ...)")
    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    merged: dict[str, Any] = {}
    for include in includes:
        target = (path.parent / str(include)).resolve()
        if not target.exists():
            where = locate(own_lines, ("include",), str(path))
            raise FairbenchError(f"{where}: include: file '{include}' not found (looked in {path.parent})")
        merged = _merge(merged, _load_with_includes(target, lines, (*seen, path)))
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
    first = error.errors()[0]
    loc = tuple(first["loc"])
    where = locate(lines, loc, file)
    key = ".".join(map(str, loc)) or "(top level)"
    if first["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        return FairbenchError(f"{where}: unknown key '{key}'{did_you_mean(str(loc[-1]), model.model_fields)}")
    if first["type"] == "missing":
        return FairbenchError(f"{where}: missing required key '{key}'")
    return FairbenchError(f"{where}: {key}: {first['msg']} (got {first.get('input')!r})")


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
    parameters, budgets and grids."""
    from fairbench.registry import DATASETS, METHODS

    def fail(path: tuple[Any, ...], message: str) -> FairbenchError:
        return FairbenchError(f"{locate(lines, path, file)}: {message}")

    for i, exp in enumerate(suite.experiments):
        at = ("experiments", i)
        if exp.dataset not in DATASETS:
            raise fail(
                (*at, "dataset"), f"unknown dataset '{exp.dataset}'{did_you_mean(exp.dataset, DATASETS.names())}"
            )
        try:
            dataset = DATASETS.get(exp.dataset)(None, **exp.options)
            dataset.check_protocol(exp.protocol)
        except FairbenchError as error:
            raise fail((*at, "options" if exp.options else "protocol"), str(error)) from None
        columns = dataset.column_names()
        roles = [(("target",), exp.target), *((("sensitive", j) if isinstance(exp.sensitive, list) else
                 ("sensitive",), text) for j, text in enumerate(exp.sensitive_list))]  # fmt: skip
        if exp.bias is not None:
            roles.append((("bias",), exp.bias))
        for key, text in roles:
            try:
                Expression(text).validate(columns, f"{key[0]}: ")
            except FairbenchError as error:
                raise fail((*at, *key), f"dataset '{exp.dataset}' {error}") from None
    for i, spec in enumerate(suite.methods):
        at = ("methods", i)
        if spec.method not in METHODS:
            raise fail((*at, "method"), f"unknown method '{spec.method}'{did_you_mean(spec.method, METHODS.names())}")
        cls = METHODS.get(spec.method)
        for name, values in spec.grid.items():
            if name not in cls.hparams:
                raise fail(
                    (*at, "grid", name),
                    f"method '{spec.method}' has no parameter '{name}'{did_you_mean(name, cls.hparams)}",
                )
            if not values:
                raise fail((*at, "grid", name), f"grid '{name}' is empty; give at least one value")
            for j, value in enumerate(values):
                try:
                    cls.hparams[name].coerce(value, f"grid.{name}")
                except FairbenchError as error:
                    raise fail((*at, "grid", name, j), str(error)) from None
        for name in spec.params:
            if name in spec.grid:
                raise fail((*at, "params", name), f"'{name}' is in both params and grid; keep one")
        try:
            cls.resolve(spec.params, suite.budget)
        except FairbenchError as error:
            bad = next((n for n in spec.params if n in str(error)), None)
            raise fail((*at, "params", bad) if bad else ("budget",), str(error)) from None
    budgets = {"paper"}.union(*(METHODS.get(spec.method).budgets for spec in suite.methods))
    if suite.budget not in budgets:
        suggestion = did_you_mean(suite.budget, budgets)
        raise fail(("budget",), f"no method of this suite has a budget '{suite.budget}'{suggestion}")
    ids = [exp.id for exp in suite.experiments]
    for index, exp_id in enumerate(ids):
        if ids.index(exp_id) != index:
            raise fail(("experiments", index), f"experiment '{exp_id}' appears twice; give each a distinct 'name'")
    labels = [spec.label or spec.method for spec in suite.methods]
    duplicates = {label for label in labels if labels.count(label) > 1}
    if duplicates:
        name = sorted(duplicates)[0]
        index = labels.index(name)
        raise fail(("methods", index), f"label '{name}' is used by several methods; give each a distinct 'label'")
    _check_same_jobs(suite, labels, fail)
    _check_report_tables(suite, fail)


def _check_report_tables(suite: Suite, fail: Any) -> None:
    """`report: {tables: [...]}`: each entry a valid ReportTable reading registered metrics."""
    from fairbench import metrics
    from fairbench.report.spec import table_from_mapping

    tables = suite.report.get("tables", [])
    if not isinstance(tables, list):
        raise fail(("report", "tables"), "report.tables must be a list of tables (name, caption, metrics, ...)")
    for index, entry in enumerate(tables):
        at: tuple[Any, ...] = ("report", "tables", index)
        try:
            spec = table_from_mapping(entry)
        except ValueError as error:
            key = next((k for k in entry if f"'{k}'" in str(error)), None) if isinstance(entry, dict) else None
            raise fail((*at, key) if key else at, f"report.tables[{index}]: {error}") from None
        read = [(name, (*at, "metrics", name) if spec.metrics else (*at, "metric")) for name in spec.metric_names]
        read += [
            (name, (*at, "select") if name == spec.select else (*at, "subject_to", name))
            for name in spec.selection_metrics
        ]
        for name, where in read:
            try:
                metrics.get(name)
            except FairbenchError as error:
                raise fail(where, f"report.tables[{index}]: {error}") from None


def _check_same_jobs(suite: Suite, labels: list[str], fail: Any) -> None:
    """Two entries that differ only by label would be the same jobs (a label is not part of a
    job's identity), and one label's rows would silently vanish: an error naming both."""
    points = [spec.points(suite.budget) for spec in suite.methods]
    for j, spec in enumerate(suite.methods):
        for i in range(j):
            if suite.methods[i].method == spec.method and any(p in points[i] for p in points[j]):
                raise fail(
                    ("methods", j),
                    f"methods '{labels[i]}' and '{labels[j]}' are the same jobs (same method and parameters; "
                    f"a label does not make a job): remove one or change its parameters",
                )
