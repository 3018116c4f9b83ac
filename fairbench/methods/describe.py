"""A method's documentation from its declarations: what it is, its paper, every parameter (type,
default, choices, where the default comes from, help), its budgets, its selection rules and the
report tables it declares. `fairbench ls methods NAME` prints it; docs/methods.md holds it for
every built-in method (`python -m fairbench.methods.describe docs/methods.md` rewrites it)."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from fairbench.methods.base import HParam, Method
from fairbench.methods.families.trained import SMALL_NETWORKS, TrainedMethod
from fairbench.registry import METHODS

# A help text that gives its default's paper value: "(paper: 100)", "(DVGE: 120)".
_CITES_PAPER = re.compile(r"\((?:paper|DVGE|GRAD|FAAP|GBA): ")


def default_source(hp: HParam, declared: str | None = None) -> str:
    """Where a default comes from: the declared `source` (or the method's `defaults_from` entry,
    `declared`), else "paper" where its help quotes the paper's value, else "not stated" (a
    mention of another option's origin says nothing of the default's)."""
    if hp.source or declared:
        return hp.source or declared
    if _CITES_PAPER.search(hp.help):
        return "paper"
    return "not stated"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def method_markdown(name: str) -> str:
    """The Markdown documentation of method `name` (a built-in or a plugin)."""
    cls: type[Method] = METHODS.get(name)
    lines = [f"## {name}", "", f"{cls.description} ({METHODS.origin(name)}, version {cls.version})", ""]
    if cls.paper is not None:
        p = cls.paper
        lines += [f"**Paper**: {p.authors}, *{p.title}*, {p.venue} {p.year}.", ""]
    else:
        lines += ["**Paper**: none (a baseline).", ""]
    module_doc = inspect.getdoc(sys.modules[cls.__module__])
    if module_doc:
        lines += [module_doc, ""]
    lines += ["| parameter | type | default | choices | default from | help |", "|---|---|---|---|---|---|"]
    for param, hp in cls.hparams.items():
        choices = ", ".join(map(str, hp.choices)) if hp.choices else ""
        kind = type(hp.default).__name__
        source = default_source(hp, cls.defaults_from.get(param))
        lines.append(f"| `{param}` | {kind} | `{hp.default!r}` | {_cell(choices)} | {source} | {_cell(hp.help)} |")
    lines.append("")
    budgets = {budget: overrides for budget, overrides in cls.budgets.items() if overrides}
    for budget, overrides in budgets.items():
        changed = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        lines.append(f"Budget `{budget}`: {changed}.")
    if budgets:
        lines.append("")
    select = cls.hparams.get("select")
    rules = ", ".join(f"`{rule}`" for rule in select.choices) if select and select.choices else "none (fixed)"
    lines += [f"**Selection rules** (`select`): {rules}.", ""]
    if cls.stackable or cls.stacks_seeds:
        small = ", ".join(f"`{arch}`" for arch in sorted(SMALL_NETWORKS))
        where = f" when `arch` is {small}" if issubclass(cls, TrainedMethod) else ""
        lines += [f"**Stacked** (`--stack`): {cls.stacking_text().removesuffix('.')}{where}.", ""]
    if cls.report_tables:
        lines.append("**Report tables** (`fairbench report --ablation`):")
        # a caption's {placeholders} are filled per table: shown as SPLIT, EXPERIMENT
        captions = [re.sub(r"\{(\w+)\}", lambda m: m[1].upper(), table.caption) for table in cls.report_tables]
        lines += [f"- `{table.name}`: {caption}" for table, caption in zip(cls.report_tables, captions)]
        lines.append("")
    return "\n".join(lines)


def methods_markdown() -> str:
    """docs/methods.md: every built-in method, in name order."""
    builtins = [name for name in METHODS.names() if METHODS.origin(name) == "built-in"]
    header = (
        "# Methods\n\nGenerated from the code by `python -m fairbench.methods.describe docs/methods.md` (a test "
        "checks it is current); `fairbench ls methods NAME` prints one, plugins included.\n\n"
    )
    return header + "\n".join(method_markdown(name) for name in builtins)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(methods_markdown())
