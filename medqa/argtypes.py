"""argparse `type=` checks shared by the command-line tools, so bad values fail at parse time with one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(kind: type, minimum: float, *, inclusive: bool = True) -> Callable[[str], float]:
    """A parser of `kind` (int or float) that refuses values below `minimum` (or equal to it, if not inclusive)."""
    noun, op = ("an integer" if kind is int else "a number"), (">=" if inclusive else ">")

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if v < minimum or (not inclusive and v == minimum):
            raise argparse.ArgumentTypeError(f"must be {op} {minimum} (got {text})")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid … value" message
    return parse
