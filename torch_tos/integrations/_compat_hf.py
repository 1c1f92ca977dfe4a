"""The private transformers APIs torch_tos uses, named once, each with its fallback.

``PreTrainedModel._from_config``       what ``AutoModel*.from_config`` calls to build a model class
                                       from a config (dtype and attention implementation set up as
                                       transformers does); without it the class is called on the
                                       config (``cls(config)``)
``_BaseAutoModelClass._model_mapping``  which configs an ``AutoModel*`` head builds; without it the
                                       head is not chosen by config (the next head is tried)
"""

from __future__ import annotations


def model_builder(cls):
    """The function that builds a model of class ``cls`` from a config: ``cls.from_config`` where
    the class has one, else ``cls._from_config``, else ``cls`` itself."""
    if hasattr(cls, "from_config"):
        return cls.from_config
    return getattr(cls, "_from_config", cls)


def auto_builds(auto, config) -> bool:
    """Whether the ``AutoModel*`` head ``auto`` builds models for ``config``'s class."""
    return type(config) in getattr(auto, "_model_mapping", ())
