"""Values of command line arguments, checked when they are parsed (a usage error, exit status 2) or before any
work starts: a bad gamma, item id, year or count, or an output file that cannot be written, is refused at once
rather than after minutes of computation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path

MAX_ITEM_ID = 2**63 - 1  # SQLite's largest integer
YEARS = (-9999, 9999)
_WHOLE = re.compile(r"[+-]?[0-9]+")


def gamma_arg(text: str | None):
    """--gamma: a number (one gamma everywhere) or a JSON object {layer index: gamma}.

    Refused here, before any work, unless every gamma is a finite number >= 0 and every key a whole number;
    whether the model has those layers is checked by :func:`bilrp_core.resolve_gamma` (named in its error).
    """
    if text is None:
        return None
    shown = text if len(text) <= 60 else text[:57] + "..."
    try:
        value = float(text)
    except ValueError:
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise argparse.ArgumentTypeError(f"{shown!r}: expected a number or JSON like '{{\"2\": 0.5}}'") from None
    if isinstance(value, dict):
        schedule = {}
        for key, gamma in value.items():
            if not key.strip().lstrip("-").isdecimal():
                raise argparse.ArgumentTypeError(f"{shown!r}: layer index {key!r} is not a whole number "
                                                 "(keys are layer indices, e.g. '{\"2\": 0.5}')")
            schedule[int(key)] = _gamma_number(gamma, shown, f" of layer {key}")
        return schedule
    return _gamma_number(value, shown, "")


def _gamma_number(value, shown: str, where: str) -> float:
    """One gamma of ``--gamma`` as a float; a usage error unless it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise argparse.ArgumentTypeError(f"{shown!r}: expected a number or a JSON object {{layer index: gamma}}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{shown!r}: gamma{where} must be a finite number >= 0")
    return number


def _whole(text: str, what: str, low: int, high: int) -> int:
    """``text`` as a whole number from ``low`` to ``high``; a usage error naming ``what`` otherwise."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    stripped = text.strip()
    if not _WHOLE.fullmatch(stripped) or len(stripped) > 25 or not low <= int(stripped) <= high:
        raise argparse.ArgumentTypeError(f"{shown!r} is not {what} (a whole number from {low} to {high})")
    return int(stripped)


def item_id_arg(text: str) -> int:
    """An item id: a whole number a database id can be (so ``-1`` or 10^23 is a usage error, not a crash)."""
    return _whole(text, "an item id", 1, MAX_ITEM_ID)


def year_arg(text: str) -> int:
    """A year of ``--year-min``/``--year-max``: a whole number from -9999 to 9999."""
    return _whole(text, "a year", *YEARS)


def count_arg(high: int):
    """A parser of counts (``-k``, ``--pairs``, ...) from 1 to ``high``: huge counts would allocate huge tables."""

    def parse(text: str) -> int:
        return _whole(text, "a valid count", 1, high)

    return parse


def pool_arg(text: str) -> int | str:
    """A patch size from 1 to 1024 px, or ``auto``: the model's default (:func:`corpus_index.build.default_pool`)."""
    return "auto" if text.strip().lower() == "auto" else _whole(text, "a patch size in pixels or 'auto'", 1, 1024)


def check_destination(path: str | None, option: str, example: str) -> None:
    """Refuse an output file that cannot be written, before any computation (not after minutes of it)."""
    if path is None or path == "-":
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give a file name such as {target / example}")
    existing = next((parent for parent in target.parents if parent.exists()), Path("."))
    if not existing.is_dir():
        raise NotADirectoryError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(target if target.exists() else existing, os.W_OK):
        raise PermissionError(f"{option} {path}: no permission to write there")
