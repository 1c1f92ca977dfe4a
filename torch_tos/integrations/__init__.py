"""Integrations with training frameworks. Each submodule imports its framework lazily: importing
``torch_tos`` never imports them, and a submodule raises a clear ``ImportError`` when its framework
is not installed.

- :mod:`torch_tos.integrations.lightning`: :class:`~torch_tos.integrations.lightning.TOsCallback`
  for PyTorch Lightning (``lightning`` or ``pytorch_lightning``).
- :mod:`torch_tos.integrations.transformers`: Hugging Face ``transformers`` —
  :func:`~torch_tos.integrations.transformers.build_from_config` (models from configs, on meta or
  a real device, with an input builder) and
  :class:`~torch_tos.integrations.transformers.TOsTrainerCallback` for the ``Trainer``.
- :mod:`torch_tos.integrations.deepspeed`: :class:`~torch_tos.TOsCounter` follows a
  ``DeepSpeedEngine`` (steps at ``engine.step()``, each rank's partition; registers its step
  adapter when imported, which the counter does once deepspeed has been imported), through
  :mod:`torch_tos.integrations.followed` (an engine's own methods followed while counting, put
  back exactly; imports no framework).
- :mod:`torch_tos.integrations.hf_meta`: what counting on meta adapts of transformers while an
  Engine is open (imports nothing of transformers; registers itself with the engine when imported,
  which the engine does once transformers has been imported).
"""
