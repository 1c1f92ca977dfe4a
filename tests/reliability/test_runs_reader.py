"""Issue 18 item 3: ``fit``/``read_runs`` read runs files as strictly as the sweep writes them;
every error names file, line and column (1-based) and what to do; outliers are reported."""

from __future__ import annotations

import csv
import io
import warnings

import pytest

from torch_tos.cli import main
from torch_tos.energy.runcells import RunsOutlierWarning
from torch_tos.energy.runfile import ResultFile, ResultFileRepaired, scan
from torch_tos.energy.runs import COLUMNS, read_runs

COL = {name: i + 1 for i, name in enumerate(COLUMNS)}  # 1-based column of each name


def rows(n_widths: int = 4, repeats: int = 3) -> list[list[str]]:
    """A valid runs table (header first): energy grows with TOs, ~10 W mean power."""
    out = [list(COLUMNS)]
    for w in range(n_widths):
        width = 4 + 2 * w
        for r in range(repeats):
            joules = 0.5 * width * (1 + 0.01 * r)
            values = {"family": "ffn", "width": width, "depth": 3, "activation": "gelu", "input_size": 4,
                      "batch_size": 64, "optimizer": "sgd", "epochs": 1, "steps": 22, "dtype": "float32",
                      "threads": 1, "mode": "training", "device": "cpu", "repeat": r, "joules": joules,
                      "joules_raw": joules, "seconds": joules / 10,
                      "meter": "cputime", "estimated": "True", "host": "h", "torch": "2.14",
                      "count_device": "meta"}
            out.append([str(values.get(c, float(width * 1000) if c in ("tos", "flops", "calls", "bytes") else
                                       "" if c.startswith("ref_") else 0)) for c in COLUMNS])
    return out


def write(path, table, tail: bytes = b"") -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    path.write_bytes(buf.getvalue().encode() + tail)
    return str(path)


def with_cell(table, line: int, column: str, value: str):
    table = [list(r) for r in table]
    table[line - 1][COLUMNS.index(column)] = value
    return table


def test_a_valid_file_reads_with_its_file_lines(tmp_path):
    runs = read_runs(write(tmp_path / "runs.csv", rows()))
    assert len(runs) == 12 and list(runs["line"]) == list(range(2, 14))
    assert runs["steps"].dtype.kind in "if" and (runs["steps"] == 22).all()


def test_a_last_line_cut_inside_its_last_field_is_refused(tmp_path):
    table = rows()
    good = write(tmp_path / "runs.csv", table)
    data = open(good, "rb").read()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(data[:-2])  # "…,0\n" → "…," : the last field lost its digits, no line end
    with pytest.raises(ValueError) as e:
        read_runs(cut)
    msg = str(e.value)
    assert f"cut.csv line 13, column {len(COLUMNS)} ({COLUMNS[-1]}): an incomplete last line" in msg
    assert "a run killed while it was written" in msg and "delete the line" in msg
    # the writer sees the same damage on the same line, and repairs it
    with pytest.warns(ResultFileRepaired, match="removed line 13: an incomplete last line"):
        assert len(ResultFile(cut, COLUMNS).rows()) == 11
    assert len(read_runs(cut)) == 11


@pytest.mark.parametrize("damage, line, what", [
    (lambda data: data.replace(b"\nffn,6,", b"\n\x00\x00\x00,6,", 1), 5, "NUL bytes"),
    (lambda data: data.replace(b"\nffn,6,", b"\nffn,6,\xff,", 1), 5, "not UTF-8"),
    (lambda data: data.replace(b"\nffn,6,3,", b"\nffn,6,3,,", 1), 5, f"{len(COLUMNS) + 1} fields instead of "
                                                                   f"{len(COLUMNS)}"),
])
def test_damaged_lines_are_refused_where_the_writer_would_repair_them(tmp_path, damage, line, what):
    p = tmp_path / "runs.csv"
    write(p, rows())
    p.write_bytes(damage(p.read_bytes()))
    assert [d.line for d in scan(p.read_bytes()).damage] == [line]
    with pytest.raises(ValueError, match=f"runs.csv line {line}, column .*{what}"):
        read_runs(p)


def test_a_column_named_twice_is_refused(tmp_path):
    table = rows()
    table[0][COLUMNS.index("seconds")] = "joules"
    with pytest.raises(ValueError, match=rf"line 1: column 'joules' is named twice \(columns {COL['joules']} and "
                                         rf"{COL['seconds']}\)"):
        read_runs(write(tmp_path / "dup.csv", table))


@pytest.mark.parametrize("column, value, problem", [
    ("steps", "0.5", "'0.5' is not a whole number; steps holds a positive integer"),
    ("steps", "0", "'0' is not positive; steps holds a positive integer"),
    ("batch_size", "-64", "'-64' is not positive; batch_size holds a positive integer"),
    ("repeat", "1.5", "'1.5' is not a whole number; repeat holds a non-negative integer"),
    ("joules", "-5", "'-5' is negative; joules holds a finite positive number of joules"),
    ("joules", "0", "'0' is zero"),
    ("joules", "nan", "'nan' is not a number"),
    ("joules", "1e400", "'1e400' is beyond the range of a float"),
    ("tos", "inf", "'inf' is not a number"),
    ("calls", "-3", "'-3' is negative; calls holds a finite count, 0 or more"),
    ("seconds", "0", "'0' is not positive; seconds holds a finite positive number of seconds"),
])
def test_a_bad_cell_names_file_line_and_column(tmp_path, column, value, problem):
    path = write(tmp_path / "runs.csv", with_cell(rows(), 6, column, value))
    with pytest.raises(ValueError, match=rf"runs.csv line 6, column {COL[column]} \({column}\): ({problem})") as e:
        read_runs(path)
    assert "correct the value or delete the line" in str(e.value) and len(str(e.value).splitlines()) == 1


def test_lines_are_file_lines_with_blank_lines_and_windows_line_ends(tmp_path):
    table = with_cell(rows(), 9, "tos", "")
    p = tmp_path / "runs.csv"
    write(p, table)
    data = p.read_bytes().replace(b"\n", b"\r\n")
    first_width_6 = b"\r\nffn,6,3,gelu,4,64,sgd,1,22,float32,1,training,cpu,0,"
    data = data.replace(first_width_6, b"\r\n" + first_width_6)  # a blank line before file line 5
    p.write_bytes(b"\xef\xbb\xbf" + data)  # a byte-order mark, as spreadsheet programs write
    with pytest.raises(ValueError, match=rf"runs.csv line 10, column {COL['tos']} \(tos\) is empty; every run "
                                         "needs its tos"):
        read_runs(p)  # line 9 of the table is file line 10: one blank line above it


@pytest.mark.parametrize("joules, seconds, power", [("1e308", "0.2", r"10\^309 W"), ("1e-300", "0.2", "5e-300 W")])
def test_a_run_of_impossible_power_is_refused(tmp_path, joules, seconds, power):
    table = with_cell(with_cell(rows(), 7, "joules", joules), 7, "seconds", seconds)
    with pytest.raises(ValueError, match=rf"line 7, column {COL['joules']} \(joules\): .* J in 0.2 s is a mean "
                                         rf"power of {power}, outside what any computer draws"):
        read_runs(write(tmp_path / "runs.csv", table))


def test_outliers_are_reported_with_file_and_line(tmp_path):
    table = with_cell(rows(), 4, "joules", "40")  # width 4: the other runs hold 2 J
    table = with_cell(table, 4, "seconds", "4")
    table = with_cell(table, 9, "seconds", "100")  # 4.04 J in 100 s: 0.04 W against 10 W
    with pytest.warns(RunsOutlierWarning) as caught:
        runs = read_runs(write(tmp_path / "runs.csv", table))
    assert len(runs) == 12
    msg = str(caught[0].message)
    assert msg.startswith("2 outlier run(s): ")
    assert "runs.csv line 4: 40 J, 19.8× the median of its configuration's 3 runs (2.02 J)" in msg
    assert "runs.csv line 9: a mean power of 0.0404 W, 1/248 of the file's median (10 W)" in msg
    assert "delete the lines that are not real measurements" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunsOutlierWarning)
        read_runs(write(tmp_path / "clean.csv", rows()))  # nothing to report


@pytest.mark.parametrize("edit, message", [
    (lambda t: with_cell(t, 5, "steps", "0.5"), "runs.csv line 5, column 9 (steps): '0.5' is not a whole number"),
    (lambda t: with_cell(t, 5, "joules", "1e-300"), "is a mean power of"),
    (lambda t: with_cell(t, 5, "calls", "-1"), f"runs.csv line 5, column {COL['calls']} (calls): '-1' is negative"),
])
def test_fit_prints_the_reader_error_as_one_line(tmp_path, capsys, edit, message):
    path = write(tmp_path / "runs.csv", edit(rows()))
    assert main(["fit", path, "--evaluate", "none", "--degrees", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_fit_prints_outliers_as_warning_lines(tmp_path, capsys):
    path = write(tmp_path / "runs.csv", with_cell(with_cell(rows(), 4, "joules", "40"), 4, "seconds", "4"))
    assert main(["fit", path, "--evaluate", "none", "--degrees", "1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("torch-tos: warning: 1 outlier run(s): ") and "line 4: 40 J" in err
