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

# transformers on meta: its mask checks are answered while an Engine is open (the integration
# registers itself with the engine when imported; imported only once transformers is)
autoload_meta_adaptation("transformers.masking_utils", "torch_tos.integrations.hf_meta")
del autoload_meta_adaptation

__all__ = ["BOs", "BO_NAMES", "TOsCounter", "TransistorTable", "DEFAULT_TABLE", "tos", "profile", "Report",
           "PhaseTotal", "UnsupportedOp", "Engine", "UnsupportedOpWarning", "graph", "GraphReport", "GraphTraceError",
           "NodeCount", "register_rule", "unregister_rule", "RuleError", "UpperBoundWarning"]
__version__ = "0.1.0"
