"""What every ``torch-tos`` command shares: the user-error type, the parser that turns argparse's
own usage errors into it (one line on stderr, exit code 2, never a traceback) and takes options
only as written in full (``--mod`` is not ``--model-kwargs``), and :func:`describe_failure`, the
one line that says what an exception raised by the user's model was and where it was raised."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import sysconfig
import traceback
import warnings


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already states its default or
    there is nothing to state (``None``, flags that are off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or nothing or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors raise :class:`CLIError`; options are taken
    only as written in full (``allow_abbrev=False``: a prefix such as ``--mode`` of
    ``--model-kwargs`` is an unknown option, not that option); ``--help`` shows every option's
    default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise CLIError(message)


def check_input_file(path: str, option: str, hint: str) -> str:
    """``path`` if it names a readable file, else a one-line :class:`CLIError` saying what it is
    (missing, a folder, unreadable) and ``hint`` (how to get such a file)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise CLIError(f"{option} {p!r} is a folder, not a file; {hint}")
    if not os.path.exists(p):
        raise CLIError(f"{option} {p!r} does not exist; {hint}")
    if not os.path.isfile(p):
        raise CLIError(f"{option} {p!r} is not a regular file; {hint}")
    if not os.access(p, os.R_OK):
        raise CLIError(f"{option} {p!r} is not readable by this user")
    return p


@contextlib.contextmanager
def warnings_as_lines(*categories):
    """Print each warning of ``categories`` raised inside the block as one ``torch-tos: warning:``
    line on stderr, at once (other warnings as Python shows them)."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, categories):
            print(f"torch-tos: warning: {message}", file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        previous = warnings.showwarning
        for category in categories:
            warnings.simplefilter("always", category)
        warnings.showwarning = show
        yield


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_library(path: str, roots: tuple[str, ...]) -> bool:
    path = os.path.abspath(path)
    if path.startswith(roots):
        return True
    stdlib = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep
    return path.startswith(stdlib) and "-packages" + os.sep not in path


def _library_roots() -> tuple[str, ...]:
    roots = []
    for name in ("torch", "torch_tos"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__file__", None):
            roots.append(os.path.dirname(os.path.abspath(mod.__file__)) + os.sep)
    return tuple(roots)


def _short_path(path: str) -> str:
    path = os.path.abspath(path)
    cwd = os.getcwd() + os.sep
    if path.startswith(cwd):
        return path[len(cwd):]
    marker = os.sep + "site-packages" + os.sep
    return path.split(marker, 1)[1] if marker in path else path


def raised_in_torch_tos(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is torch_tos's own code (not the user's model)."""
    import torch_tos

    root = os.path.dirname(os.path.abspath(torch_tos.__file__)) + os.sep
    frames = list(traceback.walk_tb(exc.__traceback__))
    return bool(frames) and os.path.abspath(frames[-1][0].f_code.co_filename).startswith(root)


def describe_failure(exc: BaseException) -> str:
    """``"KeyError: 'x' in layer 'encoder.0' (Linear), at mymodel.py:12"``: the exception, the
    innermost running ``nn.Module`` (its qualified name in the outermost module being run) and the
    innermost source line outside torch, torch_tos and the standard library."""
    import torch

    frames = list(traceback.walk_tb(exc.__traceback__))
    modules = [f.f_locals.get("self") for f, _ in frames]
    modules = [m for m in modules if isinstance(m, torch.nn.Module)]
    text = f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__
    if modules:
        root, inner = modules[0], modules[-1]
        name = next((n for n, m in root.named_modules() if m is inner), None)
        if name:
            text += f" in layer {name!r} ({type(inner).__name__})"
        else:
            text += f" in {type(inner).__name__}.forward"
    roots = _library_roots()
    user = [(f, line) for f, line in frames if not _is_library(f.f_code.co_filename, roots)]
    if user:
        f, line = user[-1]
        text += f", at {_short_path(f.f_code.co_filename)}:{line}"
    return text
