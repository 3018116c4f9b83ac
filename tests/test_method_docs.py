"""Each method documents itself: `fairbench ls methods NAME` and docs/methods.md, from the declarations."""

from __future__ import annotations

from pathlib import Path

from fairbench.methods.base import HParam
from fairbench.methods.describe import default_source, methods_markdown
from fairbench.registry import METHODS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "methods.md"


def test_docs_methods_md_is_current() -> None:
    assert DOCS.read_text() == methods_markdown(), (
        "docs/methods.md is stale: rewrite it with python -m fairbench.methods.describe docs/methods.md"
    )


def test_every_builtin_method_but_erm_names_its_paper() -> None:
    builtins = [name for name in METHODS.names() if METHODS.origin(name) == "built-in"]
    assert [name for name in builtins if METHODS.get(name).paper is None] == ["erm"]
    grad = METHODS.get("grad_pred").paper
    assert (grad.authors, grad.venue, grad.year) == ("Edward Raff, Jared Sylvester", "IEEE DSAA", 2018)


def test_ls_methods_name_documents_paper_parameters_selection_and_tables(fairbench) -> None:
    shown = fairbench("ls", "methods", "grad_pred")
    assert shown.code == 0, shown.err
    assert "Edward Raff, Jared Sylvester, *Gradient Reversal Against Discrimination" in shown.out
    for param, hp in METHODS.get("grad_pred").hparams.items():
        assert f"| `{param}` | {type(hp.default).__name__} | `{hp.default!r}` |" in shown.out
    assert "| `lam` | float | `100.0` |  | paper | weight of the reversed protected-attribute loss" in shown.out
    assert "**Selection rules** (`select`): `acc`, `disc`, `last`." in shown.out
    assert "- `grad`: GRAD's columns" in shown.out
    assert "Budget `quick`: epochs=20." in shown.out


def test_ls_one_unknown_method_or_a_name_for_another_list_is_a_one_line_error(fairbench) -> None:
    unknown = fairbench("ls", "methods", "grad_prd")
    assert unknown.code == 2 and "did you mean 'grad_pred'?" in unknown.err
    other = fairbench("ls", "datasets", "adult")
    assert other.code == 2 and "only `ls methods NAME`" in other.err


def test_default_source_is_declared_or_quoted_from_the_paper_never_guessed() -> None:
    assert default_source(HParam(100.0, "weight (paper: 100)")) == "paper"
    assert default_source(HParam(120, "epochs of d (DVGE: 120)")) == "paper"
    assert default_source(HParam(True, "clip (eq. 9); false = released code", source="paper")) == "paper"
    # naming where another choice comes from says nothing of the default's origin
    assert default_source(HParam("mean", "posterior mean | one sample (released code)")) == "not stated"
