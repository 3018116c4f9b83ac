"""`fairbench data fetch | import | ls`: thin click wrappers over `fairbench.data.catalog`
(which asks each registered dataset, plugins included)."""

from __future__ import annotations

import click

from fairbench.data import catalog

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="data folder (default: $FAIRBENCH_DATA, else ~/.cache/fairbench/data)",
)


@click.command()
@click.argument("name")
@_DATA_DIR
def fetch(name: str, data_dir: str | None) -> None:
    """Download dataset NAME's freely available files (checksummed, resumable)."""
    for line in catalog.fetch(name, data_dir):
        click.echo(line)


@click.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--copy", is_flag=True, help="copy the files instead of linking to them")
@click.option("--skip-checksums", is_flag=True, help="skip the md5 and full-count checks (subsets, edited copies)")
@click.option("--follow-links", is_flag=True, help="import through links that lead out of PATH (refused otherwise)")
@_DATA_DIR
def import_(name: str, path: str, copy: bool, skip_checksums: bool, follow_links: bool, data_dir: str | None) -> None:
    """Check your copy of dataset NAME at PATH and link (or --copy) it into the data folder
    (for datasets that cannot be downloaded, such as celeba)."""
    lines = catalog.import_files(name, path, data_dir, copy=copy, verify=not skip_checksums, follow_links=follow_links)
    for line in lines:
        click.echo(line)


@click.command("ls")
@_DATA_DIR
def ls(data_dir: str | None) -> None:
    """Every registered dataset: present or missing, where, and what to do."""
    colour = {"present": "green", "generated": "green", "partial": "yellow", "missing": "red"}
    for status in catalog.ls(data_dir):
        state = click.style(f"{status.state:<9}", fg=colour.get(status.state, "red"))
        click.echo(f"{status.name:<22} {status.kind:<8} {state} {status.location}")
        if status.missing:
            click.echo(f"  missing: {', '.join(status.missing)}")
        for note in status.notes:
            click.echo(f"  {note}")
        if status.action:
            click.echo(f"  to get it: {status.action}")


COMMANDS = [fetch, import_, ls]
