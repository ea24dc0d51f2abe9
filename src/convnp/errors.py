"""The command line's error convention, shared by every ``convnp`` sub-command.

A sub-command raises ``UserError("what is wrong and what to do")`` for anything the user can fix (a
missing file, a bad value, an unknown name); ``convnp.cli.main`` prints it as ``convnp COMMAND: message``
on stderr (every line of it) and exits with status 1, never with a traceback.  A flag's value is checked
by argparse with one of the types below, so its error names the flag: ``argument --seed: expected a
whole number >= 0, got '-1'``.
"""
import argparse
import re

from .backend import cuda_problem, resolve_device


class UserError(Exception):
    """An error the user can fix; reported without a traceback."""


def one_line(error):
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


def checked(convert, is_valid, expected):
    """An argparse type: convert the text, then check it, with a message saying what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not is_valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


positive_int = checked(int, lambda value: value >= 1, "a positive integer")
non_negative_int = checked(int, lambda value: value >= 0, "a whole number >= 0")
positive_float = checked(float, lambda value: 0 < value < float("inf"), "a positive number")
non_negative_float = checked(float, lambda value: 0 <= value < float("inf"), "a number >= 0")
fraction = checked(float, lambda value: 0 <= value < 1, "a fraction in [0, 1)")
# convnp computes on one GPU (CuPy's current device), so 'cuda' or 'cuda:0'; 'cuda:1' would be a silent lie
device_name = checked(str.lower, lambda value: re.fullmatch(r"cpu|cuda(:0)?", value) is not None, "cpu or cuda")


def usable_device(name, flag="--device"):
    """A ``--device`` value ('cpu', 'cuda') -> the ``convnp.device`` to compute on; UserError
    saying why and what to install when convnp cannot compute there (no CuPy, no GPU)."""
    problem = cuda_problem() if name.startswith("cuda") else None
    if problem:
        raise UserError(f"{flag} {name}: {problem}; or use {flag} cpu")
    return resolve_device(name)
