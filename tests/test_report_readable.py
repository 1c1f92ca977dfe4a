"""The readable default report: per-layer rows at an automatic depth with output shapes,
parameters and the share of the TOs; SI totals up to Y, exact counts on request; energies in
J/Wh; repeated blocks merged; the figure's palettes and axes; the sortable HTML page."""

import json
import re
import shutil
import subprocess
from fractions import Fraction

import pytest
import torch
import torch.nn as nn
import torchvision

import torch_tos
from torch_tos.counts import Counts
from torch_tos.layerview import layer_view
from torch_tos.report import Report


def _cells(text: str, label: str) -> list[str]:
    """The cells of the table row whose first cell is ``label`` (columns are 2+ spaces apart)."""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{text}")


def _paper_ffn():
    torch.manual_seed(0)
    return torch_tos.profile(nn.Sequential(nn.Linear(4, 18), nn.Sigmoid()), torch.randn(1, 4))


def test_paper_eq4_reads_in_the_default_table():
    # Eq. 4: Linear(4→18) + Sigmoid on one sample = [(I+1)O, O, IO, O, O] = [90, 18, 72, 18, 18];
    # the Linear: 18 outputs × (4 products, 3 accumulations + 1 bias add); the sigmoid: 18 × [1, 1, 0, 1, 1]
    r = _paper_ffn()
    text = str(r)
    assert _cells(text, "0")[:9] == ["0", "Linear", "[1, 18]", "90", "72", "0", "72", "0", "0"]
    assert _cells(text, "1")[:9] == ["1", "Sigmoid", "[1, 18]", "--", "18", "18", "0", "18", "18"]
    assert _cells(text, "total")[:6] == ["total", "90", "18", "72", "18", "18"]
    # TOs (float32, DESIGN.md §4): 72 × 236 + 72 × 12,736.25 = 934,002 and 18 × (2 × 236 + 15,548.75
    # + 57,042) = 1,315,129.5; shares 41.5 % and 58.5 %; SI by default, every digit with exact=True
    assert _cells(text, "0")[9:11] == ["934K", "41.5%"] and "TOs 2.25M" in text
    full = r.table(exact=True)
    assert _cells(full, "0")[9] == "934,002" and _cells(full, "1")[9] == "1,315,129.5"
    assert "TOs 2,249,131.5" in full and "params 90" in full


class _Net(nn.Module):
    """Own parameter (3), a Sequential (20 + 12), a GRU (two outputs), a head called twice."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.body = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        self.rnn = nn.GRU(2, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        h = self.body(x * self.scale)
        out, _ = self.rnn(h.unsqueeze(1))
        return self.head(out[:, -1]).sum() + self.head(out).sum()


def test_output_shapes_and_parameters_per_row():
    r = torch_tos.profile(_Net(), torch.randn(2, 3))
    # shapes come from the forward hooks at count time: the GRU returns (out, h_n), the head ran
    # twice with two shapes
    assert r.output_shapes["rnn"] == [((2, 1, 4), (1, 2, 4))]
    assert r.output_shapes["head"] == [((2, 1),), ((2, 1, 1),)]
    assert r.own_params == {"": 3, "body.0": 20, "body.2": 12, "rnn": 96, "head": 5}  # GRU: 3 × (8 + 16 + 4 + 4)
    shallow = {row.label: row for row in layer_view(r, 1).rows}
    # at depth 1 a layer holds its submodules' parameters; the model keeps only its own
    assert {k: v.params for k, v in shallow.items()} == {"(model)": 3, "body": 32, "rnn": 96, "head": 5}
    every = {row.label: row for row in layer_view(r, None).rows}
    assert every["body.0"].params == 20 and every["body.1"].params == 0 and "body" not in every
    text = r.table(depth=1)
    assert _cells(text, "rnn")[1:4] == ["GRU", "[2, 1, 4] +1", "96"]
    assert _cells(text, "head")[1:4] == ["Linear", "[2, 1] …", "5"]
    assert "+k = k more tensors in the output; … = later calls returned other shapes" in text


def test_the_training_counter_report_has_shapes_and_parameters():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch_tos.TOsCounter(model, opt) as counter:
        opt.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        opt.step()
    r = counter.report()
    assert r.output_shapes["0"] == [((5, 8),)] and r.own_params == {"0": 40, "2": 9}
    assert _cells(str(r), "2")[1:4] == ["Linear", "[5, 1]", "9"]


def test_auto_depth_names_the_blocks_of_a_resnet_and_shares_add_up():
    r = torch_tos.profile(torchvision.models.resnet18(), torch.randn(2, 3, 32, 32), mode="training",
                          device="meta")
    view = layer_view(r)
    labels = [row.label for row in view.rows]
    # depth 3 would list ~55 rows: depth 2 (16 rows) is the deepest that fits 30
    assert view.depth == 2 and view.max_depth == 4 and not view.grouped
    assert labels[:6] == ["(model)", "conv1", "bn1", "relu", "maxpool", "layer1.0"]
    assert labels[-3:] == ["avgpool", "fc", "(loss)"]
    assert sum(row.tos for row in view.rows) == r.tos_exact  # exact: nothing lost to folding
    assert sum(row.params or 0 for row in view.rows) == r.params[""] == 11_689_512
    layer2 = next(row for row in view.rows if row.label == "layer2.0")
    assert layer2.params == r.params["layer2.0"] and layer2.shape == "[2, 128, 4, 4]"
    shares = [float(_cells(str(r), lab)[10].rstrip("%")) for lab in ("layer1.0", "layer2.1", "layer4.1")]
    assert all(12 < s < 14 for s in shares)  # each 3×3-conv pair at its width: ~13 % of the step


def _encoder(n_layers: int):
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    with torch.device("meta"):
        model = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
    return torch_tos.profile(model, torch.empty(1, 4, 8, device="meta"), mode="training", device="meta")


def test_repeated_blocks_are_merged_exactly():
    r = _encoder(40)  # 40 blocks do not fit 30 rows at depth 2; merged, depth 3 fits
    view = layer_view(r)
    rows = {row.label: row for row in view.rows}
    assert view.grouped and view.depth == 3
    linear1 = rows["layers.[0-39].linear1"]
    assert linear1.type == "40 × Linear" and linear1.kind == "group" and linear1.params == 40 * (8 * 16 + 16)
    per_block = r.by_module()
    assert tuple(linear1.bos) == tuple(sum((per_block[f"layers.{i}.linear1"] for i in range(40)),
                                           torch_tos.BOs()))
    # the first block's attention has no input gradient to compute (the input needs none): its own row
    assert "layers.0.self_attn" in rows and rows["layers.[1-39].self_attn"].type == "39 × MultiheadAttention"
    assert rows["layers.0.self_attn"].tos < rows["layers.[1-39].self_attn"].tos / 39
    labels = [row.label for row in view.rows]
    assert labels.index("layers.0.self_attn") + 1 == labels.index("layers.[1-39].self_attn")
    assert sum(row.tos for row in view.rows) == r.tos_exact
    assert "repeated blocks merged" in str(r)


def test_a_model_too_wide_for_the_table_keeps_its_costliest_layers():
    widths = range(4, 45)  # 40 Linear layers, each wider than the one before: none alike
    model = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(widths, widths[1:])))
    r = torch_tos.profile(model, torch.randn(1, 4))
    view = layer_view(r)
    labels = [row.label for row in view.rows]
    assert labels == [str(i) for i in range(11, 40)] + ["(11 other layers)"]
    other = view.rows[-1]
    assert other.kind == "other" and other.layers == tuple(str(i) for i in range(11))
    assert other.tos == sum(row.tos for row in layer_view(r, None).rows[:11])
    assert sum(row.tos for row in view.rows) == r.tos_exact
    assert "table(all_rows=True) lists the folded rows" in str(r)
    assert len(layer_view(r, fold=False).rows) == 40


def test_zero_cost_layers_are_folded_and_listed_on_request():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Unflatten(1, (2, 2)), nn.Flatten(), nn.Linear(4, 2))
    r = torch_tos.profile(model, torch.randn(3, 2, 2))  # the (un)flattens are views: zero cost
    text = str(r)
    assert _cells(text, "(3 zero-cost layers)")[1:] == ["--", *["0"] * 5, "0", "0%", "0"]
    assert [c[0] for c in map(lambda lab: _cells(text, lab), ("1", "4"))] == ["1", "4"]
    everything = r.table(all_rows=True)
    assert _cells(everything, "2")[1:3] == ["Unflatten", "[3, 2, 2]"] and _cells(everything, "3")[1] == "Flatten"


class _PerRowLaw:
    """A law by the cost-model contract (``price(counts, steps=1, …)`` → a Prediction): ``joules``
    per row, 0.25 J per step no layer owns."""

    def __init__(self, joules):
        self.j = joules

    def price(self, counts, *, steps=1, types=None, report=None, **kw):
        from torch_tos.energy.predict import Prediction, per_layer_table

        rows = {k: (self.j, 0.0) for k in counts.rows}
        fixed = 0.25 * steps
        total = self.j * len(rows) + fixed
        return Prediction(total, total, total, 0.0, 0.0, 0.0, steps, "training", 0.9,
                          per_layer_table(rows, (fixed, 0.0), types), rows, fixed, 0.0)


def test_huge_counts_print_with_prefixes_up_to_yotta_and_energy_in_watt_hours():
    key = ("fc", "forward", torch.float32, "aten.mm")
    r = Report(Counts({key: [10 ** 21, 0, 10 ** 21, 0, 0, 1, 2 * 10 ** 21, 0]}), {},
               types={"fc": "Linear"}, order={"": 0, "fc": 1})
    # TOs = 1e21 × (236 + 12,736.25) = 1.2972e25
    assert r.tos_exact == Fraction(10 ** 21) * Fraction(5188900, 400)
    text = str(r)
    assert "TOs 13Y   FLOPs 2Z   BOs 2Z" in text and _cells(text, "fc")[2:9] == ["--", "1Z", "0", "1Z", "0", "0", "13Y"]
    assert "TOs 12,972,250,000,000,000,000,000,000" in r.table(exact=True)
    lawful = r.with_law(_PerRowLaw(5000.0))  # 5,000 J in the layer + 0.25 J overhead
    text = str(lawful)
    assert _cells(text, "fc")[-1] == "1.39 Wh" and "energy 1.39 Wh" in text
    assert _cells(text, "(overhead)")[-1] == "250 mJ"


def test_bad_table_arguments_are_clear_errors():
    r = _paper_ffn()
    with pytest.raises(ValueError, match="depth must be 'auto', None"):
        r.table(depth=0)
    with pytest.raises(ValueError, match="max_rows must be a positive integer"):
        r.table(max_rows=0)


# -- the figure --------------------------------------------------------------------------------

def test_plot_panels_have_their_own_colours_si_axes_and_legends():
    pytest.importorskip("matplotlib")
    r = torch_tos.profile(torchvision.models.resnet18(), torch.randn(2, 3, 32, 32), mode="training",
                          device="meta").with_law(_PerRowLaw(1e-3))
    fig = r.plot()
    kinds, phases, joules = fig.axes
    colours = [{tuple(p.get_facecolor()) for p in ax.patches} for ax in fig.axes]
    assert not colours[0] & colours[1]  # no colour means a BO kind in one panel and a phase in another
    assert colours[2] <= colours[1]     # a phase keeps its colour in both phase panels
    assert [t.get_text() for t in kinds.get_legend().get_texts()] == ["add", "sub", "mul", "div", "root"]
    assert [t.get_text() for t in phases.get_legend().get_texts()] == ["forward", "loss", "backward"]
    fig.canvas.draw()
    ticks = [t.get_text() for t in kinds.get_xticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"\d+(\.\d+)?[KMGTPEZY]?", t) for t in ticks)
    assert any(t[-1] in "GT" for t in ticks) and kinds.get_xlabel() == "TOs (transistor operations)"
    assert joules.get_xlabel() == "energy per step (J)"
    assert all(t.get_text().endswith("J") for t in joules.get_xticklabels() if t.get_text())
    # folded at the blocks (depth 2): every bar names a real layer, none is "(N other layers)"
    labels = [t.get_text() for t in kinds.get_yticklabels()]
    assert "layer3.1" in labels and not any("other" in lab for lab in labels)
    assert "depth 2 of 4" in fig._suptitle.get_text()


# -- the HTML page -----------------------------------------------------------------------------

def test_html_has_share_column_phase_totals_and_an_inline_sort():
    r = torch_tos.profile(torchvision.models.resnet18(), torch.randn(2, 3, 32, 32), mode="training",
                          device="meta")
    page = r.to_html(figure=False)
    assert "<th>% TOs</th>" in page and "<h2>Totals per phase</h2>" in page and "<td>backward</td>" in page
    assert page.count('<table class="sortable">') == 2 and "<script>" in page
    assert "src=" not in page and "href=" not in page and "http" not in page  # nothing fetched


_FAKE_DOM = """
const fs = require("fs");
const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const body = { rows: [], appendChild(r) { this.rows = this.rows.filter(x => x !== r); this.rows.push(r); } };
const table = { tBodies: [body], querySelectorAll: () => ths };
const ths = spec.header.map((h, i) => ({ cellIndex: i, dataset: {}, closest: () => table,
  addEventListener(kind, fn) { this.click = fn; } }));
body.rows = spec.rows.map(r => ({ cells: r.map(([text, v]) => ({ textContent: text,
  dataset: v === null ? {} : { v: String(v) } })) }));
global.document = { querySelectorAll: () => ths };
eval(spec.script);
const out = [];
for (const [col, times] of spec.clicks) {
  for (let k = 0; k < times; k++) ths[col].click();
  out.push(body.rows.map(r => r.cells[0].textContent));
}
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_html_sort_script_orders_rows_by_value(tmp_path):
    from torch_tos.html import _SORT_JS

    header = ["Layer", "TOs"]
    rows = [[["conv1", 1], ["25T", 2.5e13]], [["fc", 2], ["159G", 1.59e11]], [["(model)", 0], ["0", 0]],
            [["layer1.0", 3], ["72T", 7.2e13]]]
    spec = {"header": header, "rows": rows, "script": _SORT_JS, "clicks": [[1, 1], [1, 1], [0, 1]]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "dom.js").write_text(_FAKE_DOM)
    out = subprocess.run(["node", str(tmp_path / "dom.js"), str(tmp_path / "spec.json")], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    by_tos, by_tos_desc, model_order = json.loads(out)
    assert by_tos == ["(model)", "fc", "conv1", "layer1.0"]        # by value, not by the text "25T" < "72T"
    assert by_tos_desc == ["layer1.0", "conv1", "fc", "(model)"]   # a second click reverses
    assert model_order == ["(model)", "conv1", "fc", "layer1.0"]   # Layer sorts by model order
