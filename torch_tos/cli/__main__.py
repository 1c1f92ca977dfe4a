"""``python -m torch_tos.cli`` — the ``torch-tos`` command."""

import sys

from .main import main

sys.exit(main())
