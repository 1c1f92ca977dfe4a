"""What every ``torch-tos`` command shares: the user-error type and the parser that turns
argparse's own usage errors into it (one line on stderr, exit code 2, never a traceback)."""

from __future__ import annotations

import argparse


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors raise :class:`CLIError`; ``--help`` shows
    every option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise CLIError(message)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
