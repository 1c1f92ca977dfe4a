"""``torch-tos``: the parser and the entry point. Each command lives in its own module of this
package and adds itself through ``register(subparsers)``; nothing here imports back.

The contract every command keeps: an error is one line on stderr, ``torch-tos: error: ...``, and
exit code 2 — a usage error, a refused input, a file that cannot be read or written, and also an
unexpected exception (named with its type and where it was raised); ``--debug`` (before or after
the command) adds the traceback. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from .errors import CLIError, Parser, describe_failure, first_line

_DEBUG_HELP = "on an error, also print the traceback"

#: The command modules of this package, in ``--help`` order.
COMMAND_MODULES = ("profile", "energy", "fit", "predict")


def build_parser() -> Parser:
    from .. import __version__

    parser = Parser(prog="torch-tos", description="Transistor operations (TOs), BOs and FLOPs of "
                    "PyTorch models, and energy scaling laws E = f(TOs).")
    parser.add_argument("--version", action="version", version=f"torch-tos {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    for command in sub.choices.values():  # also after the command; SUPPRESS keeps a --debug given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    parser.commands = list(sub.choices)
    return parser


def _error(message: str) -> int:
    print(f"torch-tos: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    parser = build_parser()
    debug = False
    try:
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as e:  # --help and --version: their text is printed, nothing else to do
            return e.code if isinstance(e.code, int) else 0
        debug = bool(getattr(args, "debug", False))
        command = getattr(args, "command", None)
        if extra:
            raise CLIError(f"unrecognized arguments: {' '.join(extra)} (torch-tos {command or ''}"
                           f"{' ' if command else ''}--help lists the options)")
        if not command:
            raise CLIError(f"no command given; accepted: {', '.join(parser.commands)} "
                           f"(torch-tos COMMAND --help for one's options)")
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("torch-tos: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one-line contract (module doc)
        if debug:
            traceback.print_exc()
        if isinstance(e, CLIError):
            return _error(str(e))
        if isinstance(e, (ValueError, TypeError, OSError)):  # torch_tos's checks of input, file errors
            return _error(first_line(e))
        return _error(f"{describe_failure(e)} (unexpected; torch-tos --debug ... prints the traceback)")


if __name__ == "__main__":
    sys.exit(main())
