"""Options and helpers shared by the `fool` commands."""

from __future__ import annotations

import click


def progress(label: str):
    """A click progress bar on a terminal, silence otherwise (CI logs, pipes)."""
    import sys

    if not sys.stderr.isatty():
        return None
    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(1)
        if done == total:
            state["bar"].__exit__(None, None, None)

    return update


def band_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise click.BadParameter("use band numbers like 1,2,3") from None
