"""Checks of the Python API's arguments, with messages that name the parameter.

Every function of :mod:`photocorpus.api` checks what it was given before any work starts, as
scikit-learn does: a typo fails at once, with the parameter's name and the values it takes, rather
than an hour into a run or with a command-line flag that a Python caller never typed. The errors are
:class:`~photocorpus.errors.ParameterError`, so they are ``ValueError`` too.

Settings keywords (``pc.fetch_photos(corpus, jpeg_quality=95)``) are validated by the same pydantic
model that reads ``corpus.toml``, so a keyword and a line of the file obey the same rules.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from photocorpus.errors import ParameterError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else an error that lists them."""
    options = list(choices)
    if value not in options:
        raise ParameterError(f"{name} must be one of {', '.join(map(str, options))}, not {value!r}")
    return value


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None) -> Any:
    """``value`` if it is a number within [low, high] (either bound may be open), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"{name} must be a number, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            raise ParameterError(f"{name} must be at least {low}, got {value!r}")
        if low is None:
            raise ParameterError(f"{name} must be at most {high}, got {value!r}")
        raise ParameterError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def check_size(name: str, value: str, max_side: int) -> tuple[int, int]:
    """``"300x300"`` -> (300, 300), each side in 1..max_side; else an error showing the shape."""
    try:
        width, height = (int(v) for v in str(value).lower().split("x"))
    except ValueError:
        raise ParameterError(
            f"{name} must look like 300x300 (width x height in pixels), not {value!r}"
        ) from None
    if not (1 <= width <= max_side and 1 <= height <= max_side):
        raise ParameterError(f"{name} {value!r}: width and height must be between 1 and {max_side}")
    return width, height


def check_type(name: str, value: Any, kind: type | tuple[type, ...], described: str) -> Any:
    """``value`` if it is an instance of ``kind``, else an error saying what ``name`` takes."""
    if not isinstance(value, kind):
        raise ParameterError(f"{name} must be {described}, not {type(value).__name__} {value!r}")
    return value


def override_settings(section: BaseModel, changes: Mapping[str, Any], *, func: str, table: str) -> BaseModel:
    """A validated copy of a ``corpus.toml`` table with ``changes`` applied (``section`` itself when
    there are none). An unknown key names the function and the keys it takes, with the nearest match."""
    if not changes:
        return section
    known = list(type(section).model_fields)
    for key in changes:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ParameterError(
                f"{func}() got an unknown setting {key!r}{hint} Its settings are the keys of the [{table}] "
                f"table of corpus.toml: {', '.join(known)}"
            )
    try:
        return type(section).model_validate({**section.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(_problem(e, changes) for e in exc.errors())
        raise ParameterError(f"{func}(): {problems}") from None


_CHOICES = re.compile(r"^\^\(([\w|.-]+)\)\$$")  # a pattern that is a list of words: ^(a|b|c)$


def _problem(error: Any, changes: Mapping[str, Any]) -> str:
    """One pydantic error in the caller's words: the parameter, the value given, what it takes."""
    if not error["loc"]:  # a rule over several settings (a model validator): its message names them
        return str(error["msg"]).removeprefix("Value error, ")
    name = ".".join(map(str, error["loc"]))
    value = changes.get(str(error["loc"][0]))
    pattern = str((error.get("ctx") or {}).get("pattern", ""))
    choices = _CHOICES.match(pattern)
    if choices:
        return f"{name} must be one of {', '.join(choices.group(1).split('|'))}, not {value!r}"
    return f"{name}={value!r} is not valid: {error['msg']}"


@contextlib.contextmanager
def settings_for_call(corpus: Corpus, table: str, changes: Mapping[str, Any], *, func: str) -> Iterator[Any]:
    """Replace one table of ``corpus.settings`` for the duration of a call, then put it back.

    The stages read their settings from ``corpus.settings``, so this reaches every knob of a table
    without a parameter per knob in every stage; ``corpus.toml`` itself is never rewritten.
    """
    attr = "import_" if table == "import" else table
    original = getattr(corpus.settings, attr)
    updated = override_settings(original, changes, func=func, table=table)
    if updated is original:
        yield original
        return
    setattr(corpus.settings, attr, updated)
    try:
        yield updated
    finally:
        setattr(corpus.settings, attr, original)
