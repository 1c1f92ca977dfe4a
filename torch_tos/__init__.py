"""torch_tos — count the basic operations and transistor operations (TOs) of PyTorch models.

Implements Li, Tsourdos & Guo, "A Transistor Operations Model for Deep Learning Energy
Consumption Scaling Law" (IEEE TAI 2024), at the aten-dispatch level.
"""

from .bos import BO_NAMES, BOs
from .tables import DEFAULT_TABLE, TransistorTable, tos
from .report import PhaseTotal, Report, UnsupportedOp
from .api import profile
from .training import TOsCounter
from .counter import Engine, UnsupportedOpWarning
from .graph import GraphReport, GraphTraceError, NodeCount, graph
from .rules.extend import RuleError, register_rule, unregister_rule
from .hops import UpperBoundWarning
from .kernels import autoload_meta_adaptation
from .training.adapters import autoload_step_adapter

# Integrations the core follows without importing them: each registers itself when imported, and
# is imported only once its library is — transformers on meta (its mask checks answered while an
# Engine is open), DeepSpeed engines under TOsCounter (the step boundary at engine.step()).
autoload_meta_adaptation("transformers.masking_utils", "torch_tos.integrations.hf_meta")
autoload_step_adapter("deepspeed", "torch_tos.integrations.deepspeed")
del autoload_meta_adaptation, autoload_step_adapter

__all__ = ["BOs", "BO_NAMES", "TOsCounter", "TransistorTable", "DEFAULT_TABLE", "tos", "profile", "Report",
           "PhaseTotal", "UnsupportedOp", "Engine", "UnsupportedOpWarning", "graph", "GraphReport", "GraphTraceError",
           "NodeCount", "register_rule", "unregister_rule", "RuleError", "UpperBoundWarning"]
__version__ = "0.1.0"
