"""``python -m torch_tos`` — the ``torch-tos`` command."""

import sys

from .cli import main

sys.exit(main())
