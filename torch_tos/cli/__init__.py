"""The ``torch-tos`` command line (``python -m torch_tos`` runs the same).

``torch-tos profile MODULE:CALLABLE --input-shape 1,3,224,224 [--mode training] ...`` counts one
step; ``sweep``, ``fit`` and ``demo`` measure and fit energy laws. Bad input prints one line on
stderr naming what was wrong and what is accepted, and exits with code 2 — never a traceback.
"""

from .errors import CLIError, Parser
from .main import build_parser, main

__all__ = ["CLIError", "Parser", "build_parser", "main"]
