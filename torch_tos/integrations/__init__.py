"""Integrations with training frameworks. Each submodule imports its framework lazily: importing
``torch_tos`` never imports them, and a submodule raises a clear ``ImportError`` when its framework
is not installed.

- :mod:`torch_tos.integrations.lightning`: :class:`~torch_tos.integrations.lightning.TOsCallback`
  for PyTorch Lightning (``lightning`` or ``pytorch_lightning``).
"""
