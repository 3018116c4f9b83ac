"""The `fairbench` command's entry point, outside the `fairbench` package on purpose.

PyPI's `fairbench` (another project) installs an import package of the same name. Where it
shadows or overwrote ours, importing `fairbench.cli` fails before any of our code runs; this
module can still say what happened and how to fix it.
"""

from __future__ import annotations

import sys


def wrong_package_message() -> str | None:
    """None when `fairbench` is this project's package, else a one-line error naming where the
    imported one comes from."""
    try:
        import fairbench
    except ImportError as error:
        return f"error: the fairbench package cannot be imported ({error}); reinstall: pip install -e ."
    if hasattr(fairbench, "STORE_FORMAT"):
        return None
    where = getattr(fairbench, "__file__", None) or ", ".join(getattr(fairbench, "__path__", []))
    return (
        f"error: the `fairbench` imported from {where} is not fairbench-suite's: PyPI's `fairbench` (another "
        "project) installs an import package of the same name; pip uninstall fairbench, then reinstall this "
        "one (pip install -e . in its checkout)"
    )


def main() -> None:
    """Run the CLI, or exit 2 with one line when the wrong `fairbench` package is imported."""
    message = wrong_package_message()
    if message is not None:
        print(message, file=sys.stderr)
        sys.exit(2)
    from fairbench.cli import main as cli_main

    cli_main()
