"""Law files are checked whole on load (issue 18, item 1, on the cost model's format): every defect
is one ValueError naming the field; the CLI prints one line and exits 2."""

import copy
import json

import pytest

from torch_tos.cli.main import main
from torch_tos.energy import EnergyModel, load_law
from torch_tos.energy.law import MAX_BYTES, MAX_DEPTH

from energy_fakes import synthetic_law


@pytest.fixture(scope="module")
def good():
    return synthetic_law().to_dict()


def _write(tmp_path, data, name="law.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _edit(data, dotted: str, value):
    data = copy.deepcopy(data)
    *head, last = dotted.split(".")
    d = data
    for k in head:
        d = d[int(k)] if isinstance(d, list) else d[k]
    if value is _DELETE:
        del d[last]
    else:
        d[int(last) if isinstance(d, list) else last] = value
    return data


_DELETE = object()
COEF = "laws.training.joules.coef"

CASES = [
    (f"{COEF}.alpha", "nan", "must be a number"),
    (f"{COEF}.alpha", 1e308, "at most"),
    (f"{COEF}.alpha", True, "must be a number"),
    (f"{COEF}.alpha", -0.5, "non-negative"),
    (f"{COEF}.beta_forward", _DELETE, "beta_forward: is missing"),
    (f"{COEF}.beta_memory", "1e-9", "beta_memory: must be a number"),
    (f"{COEF}.beta_memory", -1e-9, "beta_memory: must be non-negative"),
    (f"{COEF}.gamma", 1.0, "gamma: is not a known field"),
    ("laws.training.joules.ratios", [-1, -2, -3], r"ratios\[0\]: must be positive"),
    ("laws.training.joules.ratios", [], "ratios: must not be empty"),
    ("laws.training.joules.ratios", "123", "ratios: must be a list"),
    ("laws.training.joules.ratios", [1.0, "1.1"], r"ratios\[1\]: must be a number"),
    ("laws.training.joules.ranges", {}, "ranges.steps: is missing"),
    ("laws.training.joules.ranges", [1, 2], "ranges: must be an object"),
    ("laws.training.joules.ranges.steps", [10, 5], "low ≤ high"),
    ("laws.training.joules.ranges.steps", [1, "x"], "must be a number"),
    ("laws.training.joules.n_train", 1.5, "n_train: must be an integer"),
    ("laws.validation", {}, "laws.validation: is not a known mode"),
    ("laws.training.watts", {}, "watts: is not a known field"),
    ("laws", {}, "laws: must hold at least one mode"),
    ("fingerprints.profile", "abc", "fingerprints.profile: must be an object"),
    ("fingerprints.runs", [1, 2], r"fingerprints.runs\[0\]: must be an object"),
    ("fingerprints.runs.0.host", ["h"], "must be a string, an integer or null"),
    ("fingerprints.profile.shoe", "x", "not a known fingerprint field"),
    ("profile.floor.seconds", -1.0, "non-negative"),
    ("profile.points.0.0", "warp", "is not a known op class"),
    ("profile.points.0.2", "float8", "is not a known dtype"),
    ("profile.points.0.7", 0, "must be positive"),
    ("profile.points.0", [1, 2], "must be a list of 9 values"),
    ("profile.dtypes", [], "must not be empty"),
    ("profile.fields", ["class"], "fields: must be"),
    ("version", 1, "version: is not supported"),
    ("meta.threads", {"a": 1}, "meta.threads: must be a string, a number or null"),
]


@pytest.mark.parametrize("field,value,message", CASES, ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES])
def test_each_defect_is_one_error_naming_the_field(tmp_path, good, field, value, message):
    path = _write(tmp_path, _edit(good, field, value))
    with pytest.raises(ValueError, match=message) as e:
        load_law(path)
    assert str(e.value).count("\n") == 0 and path in str(e.value)


def test_a_law_written_before_the_memory_term_reads_it_as_zero(tmp_path, good):
    law = load_law(_write(tmp_path, _edit(good, f"{COEF}.beta_memory", _DELETE)))
    assert law.law("training").coef_["beta_memory"] == 0.0
    assert load_law(_write(tmp_path, good, "new.json")).law("training").coef_["beta_memory"] == 2e-10


@pytest.mark.parametrize("text,message", [
    ('{"format": "torch_tos.costmodel", "version": 2, "meta": NaN}', "NaN"),
    ('{"format": "torch_tos.costmodel", "version": 2, "a": Infinity}', "Infinity"),
    ('{"format": "torch_tos.costmodel", "format": "x"}', "appears twice"),
    ('{"format": "torch_tos.law", "version": 1}', "older torch_tos"),
    ('{"format": "something"}', "not a torch_tos law file"),
    ("[1, 2]", "not a torch_tos law file"),
    ("{", "not a JSON law file"),
    ("[" * 200_000 + "]" * 200_000, f"deeper than {MAX_DEPTH}"),
])
def test_text_defects(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_law(_write(tmp_path, text))


def test_files_too_large_missing_or_folders(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(ValueError, match="larger than a law file can be"):
        load_law(big)
    with pytest.raises(FileNotFoundError, match="torch-tos calibrate"):
        load_law(tmp_path / "none.json")
    with pytest.raises(ValueError, match="is a folder"):
        load_law(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not a UTF-8"):
        load_law(tmp_path / "bin.json")


def test_the_papers_law_has_its_own_format(tmp_path):
    law = EnergyModel("tos", degree=2).fit([1.0, 2.0, 3.0, 4.0], [2.0, 4.1, 6.3, 8.0])
    law.save(tmp_path / "paper.json")
    back = load_law(tmp_path / "paper.json")
    assert back.predict([5.0]) == pytest.approx(law.predict([5.0]))
    data = json.loads((tmp_path / "paper.json").read_text())
    data["coef"] = [1.0, float("nan")]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="NaN"):
        load_law(tmp_path / "bad.json")


def test_cli_prints_one_line_and_exits_2(tmp_path, good, capsys):
    path = _write(tmp_path, _edit(good, f"{COEF}.alpha", "nan"))
    code = main(["predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}',
                 "--input-shape", "3,4", "--law", path])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "coef.alpha" in err
    code = main(["predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}',
                 "--input-shape", "3,4"])
    err = capsys.readouterr().err
    assert code == 2 and "torch-tos calibrate --out law.json" in err
