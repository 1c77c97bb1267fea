"""argparse types that range-check numbers, so a bad option is one line (``argparse``'s usage error, exit 2)."""
from __future__ import annotations

import argparse
import math


def _checked(kind, ok, requirement: str):
    """An argparse type: ``kind(text)``, finite, and ``ok(value)``, else the error 'VALUE must be REQUIREMENT'."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text} must be {requirement}")
        return value
    parse.__name__ = f"{kind.__name__} {requirement}"
    return parse


positive_int = _checked(int, lambda v: v >= 1, "at least 1")
nonnegative_int = _checked(int, lambda v: v >= 0, "at least 0")
positive_float = _checked(float, lambda v: v > 0, "a finite number greater than 0")
nonnegative_float = _checked(float, lambda v: v >= 0, "a finite number of at least 0")
fraction = _checked(float, lambda v: 0 <= v <= 1, "a number between 0 and 1")


def output_dir(text: str) -> str:
    """A directory to write into: absent (it is created) or a directory, never a file."""
    import os

    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; pass a directory (it is created if absent)")
    return text
