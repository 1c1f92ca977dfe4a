"""``torch-tos``: the parser and the entry point. Each command lives in its own module of this
package and adds itself through ``register(subparsers)``; nothing here imports back."""

from __future__ import annotations

import importlib
import sys

from .errors import CLIError, Parser, first_line

#: The command modules of this package, in ``--help`` order.
COMMAND_MODULES = ("profile", "energy", "fit", "predict")


def build_parser() -> Parser:
    from .. import __version__

    parser = Parser(prog="torch-tos", description="Transistor operations (TOs), BOs and FLOPs of "
                    "PyTorch models, and energy scaling laws E = f(TOs).")
    parser.add_argument("--version", action="version", version=f"torch-tos {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    parser.commands = list(sub.choices)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help and --version: their text is printed, nothing else to do
            return e.code if isinstance(e.code, int) else 0
        if not getattr(args, "command", None):
            raise CLIError(f"no command given; accepted: {', '.join(parser.commands)} "
                           f"(torch-tos COMMAND --help for one's options)")
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"torch-tos: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:  # torch_tos's checks of user input, file errors
        print(f"torch-tos: error: {first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torch-tos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
