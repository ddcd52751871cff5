"""``photocorpus decisions``: the audit table of human decisions (or one photo's history), and
``photocorpus undo``: revert one of them. Thin: parse, call :mod:`photocorpus.api`, print.

Reviewer names, notes and labels in the table were typed by people (through the web app, perhaps by
a stranger), so every value is printed through :func:`terminal_safe`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from photocorpus.cli_app import CorpusOption, app, open_corpus
from photocorpus.textsafety import terminal_safe


@app.command()
def decisions(
    corpus: CorpusOption = Path("."),
    photo: Annotated[int | None, typer.Option(help="Only this photo's decisions, newest first.")] = None,
    after: Annotated[int, typer.Option(help="Start after this decision id (paging).")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many decisions.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List human decisions (split, confirm, exclude, label...), oldest first, undone ones marked."""
    from photocorpus.api import decision_history

    with open_corpus(corpus) as c:
        rows = (
            decision_history(c, photo)
            if photo is not None
            else decision_history(c, after_id=after, limit=limit)
        )
    for d in rows:
        if as_json:
            record = dataclasses.asdict(d)
            typer.echo(json.dumps(record, ensure_ascii=False))
            continue
        photos = ",".join(map(str, d.photo_ids[:8])) + (",..." if len(d.photo_ids) > 8 else "")
        value = "" if d.value is None else json.dumps(d.value, ensure_ascii=False)
        state = f" (undone by #{d.undone_by})" if d.undone_by is not None else ""
        state += f" (undoes #{d.undoes})" if d.undoes is not None else ""
        who = f" by {d.reviewer}" if d.reviewer else ""
        typer.echo(terminal_safe(f"#{d.id} {d.created_at} {d.kind} [{photos}] {value}{who}{state}"))


@app.command()
def undo(
    decision_id: Annotated[int, typer.Argument(help="Id of the decision to revert (see `decisions`).")],
    corpus: CorpusOption = Path("."),
    reviewer: Annotated[str | None, typer.Option(help="Who is undoing it (kept in the audit table).")] = None,
) -> None:
    """Revert one human decision; the undo is recorded as a decision of its own."""
    from photocorpus.api import undo_decision

    with open_corpus(corpus) as c:
        done = undo_decision(c, decision_id, reviewer=reviewer)
    typer.echo(f"#{done.id}: undid decision #{done.undoes}")
