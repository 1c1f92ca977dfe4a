"""The training counter, one concern per module:

* :mod:`.counter` — :class:`TOsCounter`, the facade (user documentation);
* :mod:`.steps` — step detection and the one decision per event (cache or count);
* :mod:`.signature` — forward and optimizer signatures;
* :mod:`.cache` — the trie of step events and their segment counts;
* :mod:`.records` — :class:`StepRecord`, :class:`CounterTotal`, the bounded history;
* :mod:`.sinks` — ``log_to`` targets (TensorBoard, logging, CSV, callables);
* :mod:`.distributed` — exact totals over the ranks of a process group;
* :mod:`.hooks` — thread-bound, copy-inert hook objects and the counter's engine.
"""

from .counter import ACTIVE as _ACTIVE
from .counter import TOsCounter
from .records import CACHE_STATES, KINDS, STEP_COLUMNS, CounterTotal, StepRecord

__all__ = ["TOsCounter", "StepRecord", "CounterTotal", "STEP_COLUMNS", "KINDS", "CACHE_STATES"]
