"""Energy scaling laws E = f(TOs): meters, the runs table, the fitted law, Table V, sweeps, plots.

The paper's method (Li, Tsourdos & Guo 2024, sections II-C and III): for a family of models,
count each model's TOs (and FLOPs) for a training run, measure its energy many times, fit a
polynomial regression of degree 1-3 on 60 % of the runs, validate on 40 %, and report adjusted
R², RMSE, precision and errors (Table V).

- :mod:`.meters`: :class:`RaplMeter`, :class:`NvmlMeter`, :class:`CpuTimeMeter`, :func:`auto_meter`
- :mod:`.costmodel`: :class:`CostModel` — a device's machine profile (:mod:`.machine`, measured by
  :mod:`.microbench` over :mod:`.benchsuite`) and its step-level laws (:mod:`.steplaw`): joules
  and seconds of training or inference steps of any model, with intervals, per layer
- :mod:`.calibrate`: :func:`calibrate` (microbenchmarks + the step-level suite → a cost model)
- :mod:`.shards`: :func:`calibrate_shard`, :func:`merge_shards` (one calibration over several hosts)
- :mod:`.law`: :func:`load_law` (a cost model or a paper's law, checked whole)
- :mod:`.fit`: :class:`EnergyModel` (the paper's polynomial law of TOs or FLOPs), :func:`metrics`
- :mod:`.features`: the counted features of one step (:func:`step_features`)
- :mod:`.evaluate`: :func:`evaluate` (held-out splits, mean-only baseline, noise floor)
- :mod:`.compare`: :func:`compare` (Table V), :func:`format_table_v`
- :mod:`.sweep`: :func:`sweep` over a family (the paper's ``ffn``, ``cnn``; the micro families)
- :mod:`.runner`: the measuring engine shared by sweeps and calibration (lazy plan, locked file)
- :mod:`.reference`: drift correction by a reference workload (:class:`Reference`)
- :mod:`.runs`: the runs CSV layout, :func:`read_runs`, :func:`trim_runs`, :func:`find_duplicates`
- :mod:`.runfile`: results files checked, locked and repaired (:class:`ResultFileRepaired`)
- :mod:`.families`: the model families (:func:`get_family`)
- :mod:`.plot` (needs matplotlib): :func:`plot_fits`
"""

from .compare import compare, compare_long, format_table_v, split_runs
from .evaluate import evaluate, format_evaluation
from .features import FEATURE_NAMES, step_features
from .fit import EnergyModel, metrics
from .costmodel import CostModel
from .law import load_law
from .machine import DtypeNotMeasured, MachineProfile
from .predict import ExtrapolationWarning, Prediction
from .meters import (DEFAULT_WATTS_PER_CORE, CpuTimeMeter, InvalidWindow, Measurement, Meter,
                     MeterUnavailable, NvmlMeter, RaplMeter, RaplPermissionError, ZeusMeter, CodeCarbonMeter,
                     auto_meter, get_meter)
from .calibrate import calibrate
from .shards import calibrate_shard, merge_shards
from .reference import Reference, cv_by_config
from .runfile import ResultFileRepaired
from .runs import COLUMNS, CONFIG_COLUMNS, find_duplicates, read_runs, trim_runs, validate_runs
from .sweep import sweep

__all__ = ["EnergyModel", "CostModel", "MachineProfile", "DtypeNotMeasured", "ExtrapolationWarning", "metrics",
           "load_law", "Prediction", "step_features", "FEATURE_NAMES", "evaluate",
           "format_evaluation", "compare", "compare_long", "format_table_v", "split_runs",
           "Meter", "Measurement", "RaplMeter", "NvmlMeter", "CpuTimeMeter", "ZeusMeter", "CodeCarbonMeter", "auto_meter", "get_meter",
           "MeterUnavailable", "RaplPermissionError", "InvalidWindow", "DEFAULT_WATTS_PER_CORE",
           "COLUMNS", "CONFIG_COLUMNS", "read_runs", "trim_runs", "validate_runs", "find_duplicates", "sweep",
           "calibrate", "calibrate_shard", "merge_shards", "Reference", "cv_by_config", "ResultFileRepaired", "plot_fits"]


def plot_fits(*args, **kwargs):
    """See :func:`torch_tos.energy.plot.plot_fits` (imports matplotlib lazily)."""
    from .plot import plot_fits as _plot_fits

    return _plot_fits(*args, **kwargs)
