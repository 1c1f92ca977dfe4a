"""One Report factory (torch_tos.reporting.build_report): profile(), Engine.report() and
TOsCounter.report() give the same report for the same training step."""

from __future__ import annotations

import ast
import copy
import pathlib

import torch
import torch.nn as nn

import torch_tos


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 3), nn.Tanh()))


def _step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss


def _three_reports():
    model, x, y = _net(), torch.randn(5, 4), torch.randn(5, 3)
    models = [copy.deepcopy(model) for _ in range(3)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]

    profiled = torch_tos.profile(models[0], x, mode="training", target=y, loss_fn=nn.functional.mse_loss,
                                 optimizer=opts[0])
    with torch_tos.Engine(model=models[1]) as engine:  # the phases profile() sets, set by hand
        engine.phase = "forward"
        out = models[1](x)
        engine.phase = "loss"
        loss = nn.functional.mse_loss(out, y)
        engine.phase = "backward"
        loss.backward()
        engine.phase = "optimizer"
        opts[1].step()
    engined = engine.report()
    with torch_tos.TOsCounter(models[2], opts[2], cache=False) as counter:
        _step(models[2], opts[2], x, y)
        opts[2].step()
    countered = counter.report(step=0)
    return profiled, engined, countered


def _rows(report):
    """Rows with the pseudo-layers' types left out (each caller knows a different part of them)."""
    return [{**r, "type": r["type"] if not r["layer"].startswith("(") else None} for r in report.rows()]


def _costed(report):
    return {k: v for k, v in report.counts.rows.items() if any(v[:5]) or v[6]}


def test_the_three_paths_give_equal_reports_for_the_same_step():
    profiled, engined, countered = _three_reports()
    assert profiled.calls > 0 and profiled.tos > 0
    assert set(profiled.phases) == {"forward", "loss", "backward", "optimizer"}
    assert engined == profiled                         # counts, unsupported, dtype override
    # the counter books the zero-cost seed of backward (ones_like) under loss and lets the
    # profiler's record_function markers through uncounted: every costed row is the same
    assert _costed(countered) == _costed(profiled) and countered.unsupported == profiled.unsupported
    for other in (engined, countered):
        assert other.tos_exact == profiled.tos_exact and other.flops == profiled.flops
        assert _rows(other) == _rows(profiled)         # per layer, phase and dtype: BOs, TOs, FLOPs
        assert other.by_phase() == profiled.by_phase()
        assert other.params == profiled.params and other.own_params == profiled.own_params
        assert other.output_shapes == profiled.output_shapes
        assert other.uncalled_modules() == profiled.uncalled_modules() == set()
    assert profiled.params[""] == 4 * 8 + 8 + 8 * 3 + 3
    assert profiled.output_shapes["2.0"] == [((5, 3),)]
    # what each caller knows beyond the step itself
    assert profiled.layer_type("(optimizer)") == countered.layer_type("(optimizer)") == "SGD"
    assert engined.layer_type("(optimizer)") == ""  # a bare Engine is not told the optimizer
    assert profiled.metadata["mode"] == "training" and engined.metadata["mode"] == "engine"
    assert countered.metadata["source"] == "TOsCounter"


def test_only_the_factory_constructs_a_report():
    package = pathlib.Path(torch_tos.__file__).parent
    calls = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Report":
                calls.setdefault(str(path.relative_to(package)), []).append(node.lineno)
    assert list(calls) == ["reporting.py"], calls
