"""docs/rules.md is generated from the rules registry; it must match a fresh render."""

from __future__ import annotations

from torch_tos.rules import RULES, ZERO_OPS
from torch_tos.rules import doc


def test_rules_doc_is_up_to_date():
    current = doc.DOC_PATH.read_text() if doc.DOC_PATH.exists() else ""
    assert doc.is_current(current), f"{doc.DOC_PATH} is stale: run `{doc.COMMAND}` and commit the result"


def test_another_torch_may_lack_rows_but_never_differ():
    text = doc.render()
    line = f"Rendered with torch {doc.torch_version()};"
    assert line in text
    older = text.replace(line, "Rendered with torch 99.0.0;")
    assert doc.is_current(older)  # rendered by another torch: every row of this one is there
    row = next(x for x in text.splitlines() if x.startswith("| `aten.mm`"))
    assert not doc.is_current(older.replace(row, row.replace("|", "| x", 1)))  # a row differs
    assert not doc.is_current(text.replace(row + "\n", ""))  # same torch: exact


def test_one_row_per_registered_op():
    rows = doc.rows()
    assert len(rows) == sum(doc.counts()) >= len(RULES) + len(ZERO_OPS)
    assert len({r[0] for r in rows}) == len(rows)
    by_op = {op: (family, text) for op, family, text in rows}
    # per-element rules show their unit; others their formula; memory-only ops 0
    assert by_op["aten.sigmoid"] == ("activations", "[1, 1, 0, 1, 1] per element")
    assert by_op["aten._scaled_dot_product_flash_attention_for_cpu"][0] == "attention"
    assert by_op["aten.mkldnn_rnn_layer"][0] == "recurrent"
    assert by_op["aten.embedding"] == ("embedding", "0 (memory only)")
    assert all(text for _op, _family, text in rows)


def test_check_mode_reports_staleness(tmp_path, capsys):
    out = tmp_path / "rules.md"
    assert doc.main(["--out", str(out)]) == 0
    assert doc.main(["--check", "--out", str(out)]) == 0
    out.write_text("stale\n")
    assert doc.main(["--check", "--out", str(out)]) == 1
    assert doc.COMMAND in capsys.readouterr().err
