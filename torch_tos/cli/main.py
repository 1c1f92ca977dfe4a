"""``torch-tos``: the parser and the entry point. Each command lives in its own module of this
package and adds itself through ``register(subparsers)``; nothing here imports back."""

from __future__ import annotations

import importlib
import sys

from .errors import CLIError, Parser

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
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"torch-tos: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"torch-tos: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torch-tos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
