"""Results files: checked before any work, repaired loudly, never half-written."""

import csv
import errno
import os

import pytest

from torch_tos.energy import CpuTimeMeter, sweep
from torch_tos.energy import runfile
from torch_tos.energy.runfile import ResultFile, ResultFileRepaired, check_output

COLS = ["a", "b", "c"]
TINY = dict(widths=[4], activations=["tanh"], epochs=1, repeats=2, progress=False)


def test_check_output_refuses_what_cannot_hold_a_results_file(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="is a folder"):
        check_output(tmp_path)
    with pytest.raises(ValueError, match="does not exist; create it first"):
        check_output(tmp_path / "missing" / "runs.csv")
    with pytest.raises(ValueError, match="not a regular file"):
        check_output("/dev/full")
    target = tmp_path / "runs.csv"
    assert check_output(target) == target and not target.exists()  # checking creates nothing
    monkeypatch.setattr(runfile.os, "access", lambda *a, **k: False)  # an unwritable folder or file
    with pytest.raises(ValueError, match="not writable by this user"):
        check_output(target)
    target.write_text("")
    with pytest.raises(ValueError, match="not writable by this user"):
        check_output(target)


def test_a_torn_last_line_is_removed_with_a_warning(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes(b"a,b,c\n1,2,3\n4,5")
    with pytest.warns(ResultFileRepaired, match="incomplete last line"):
        rows = ResultFile(p, COLS).rows()
    assert rows == [{"a": "1", "b": "2", "c": "3"}]
    assert p.read_bytes() == b"a,b,c\n1,2,3\n"  # repaired on disk


def test_a_nul_filled_middle_line_is_removed_with_a_warning(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes(b"a,b,c\n1,2,3\n\x00\x00\x00\x00\n7,8,9\n")
    with pytest.warns(ResultFileRepaired, match="removed line 3: it holds NUL bytes"):
        rows = ResultFile(p, COLS).rows()
    assert [r["a"] for r in rows] == ["1", "7"]
    assert b"\x00" not in p.read_bytes()


def test_a_line_with_the_wrong_number_of_fields_is_removed_with_a_warning(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes(b"a,b,c\n1,2,3\n4,5\n7,8,9\n")
    with pytest.warns(ResultFileRepaired, match="removed line 3: 2 fields instead of 3"):
        rows = ResultFile(p, COLS).rows()
    assert [r["a"] for r in rows] == ["1", "7"]


def test_a_full_disk_leaves_no_half_row(tmp_path, monkeypatch):
    p = tmp_path / "r.csv"
    rf = ResultFile(p, COLS)
    rf.append({"a": 1, "b": 2, "c": 3})
    before = p.read_bytes()

    def full(fd, data):
        os.write(fd, data[:3])  # part of the row reaches the disk, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runfile, "_write_all", full)
    with pytest.raises(ValueError, match="cannot write to .*No space left on device"):
        rf.append({"a": 4, "b": 5, "c": 6})
    assert p.read_bytes() == before


def test_another_layout_is_refused(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="not a results file of this layout .*lacks a, b, c"):
        ResultFile(p, COLS).rows()


def test_sweep_repairs_a_damaged_file_and_says_so(tmp_path):
    out = tmp_path / "runs.csv"
    sweep("ffn", out, meter=CpuTimeMeter(), **TINY)
    lines = out.read_bytes().split(b"\n")
    damaged = b"\n".join([lines[0], b"\x00" * 40, lines[1]]) + b"\n" + lines[2][:30]
    out.write_bytes(damaged)
    with pytest.warns(ResultFileRepaired) as record:
        df = sweep("ffn", out, meter=CpuTimeMeter(), **TINY)
    messages = " | ".join(str(w.message) for w in record)
    assert "NUL bytes" in messages and "incomplete last line" in messages
    assert len(df) == 2  # the lost run was measured again
    with open(out, newline="") as f:
        assert sorted(r["repeat"] for r in csv.DictReader(f)) == ["0", "1"]


def test_sweep_checks_its_output_before_any_work(tmp_path):
    calls = []
    with pytest.raises(ValueError, match="is a folder"):
        sweep("ffn", tmp_path, meter=CpuTimeMeter(), callback=calls.append, **TINY)
    with pytest.raises(ValueError, match="not a regular file"):
        sweep("ffn", "/dev/full", meter=CpuTimeMeter(), callback=calls.append, **TINY)
    assert calls == []


def test_a_file_of_another_layout_is_refused_and_left_untouched(tmp_path):
    # A file written with 4 columns read as a 3-column layout: every data row has the "wrong"
    # number of fields for the new layout, so repairing first would delete them all as torn
    # writes. The header is checked first: one clear error, and the bytes stay as they were.
    p = tmp_path / "old.csv"
    original = b"a,b,c,d\n1,2,3,4\n5,6,7,8\n"
    p.write_bytes(original)
    with pytest.raises(ValueError, match="not a results file of this layout"):
        ResultFile(p, COLS).rows()
    assert p.read_bytes() == original
