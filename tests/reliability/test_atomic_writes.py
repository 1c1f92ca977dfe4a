"""Issue 18 item 2: every file torch_tos replaces for a user is written beside it and renamed over
it; a full disk or an I/O error leaves the previous file intact and the error names the path.

Faults: a fake that fails the n-th write (:func:`disk_faults.fail_nth_write`) and a real full file
system (a 64 KiB tmpfs, :func:`disk_faults.run_on_full_disk`) where the platform allows one."""

from __future__ import annotations

import csv
import errno
import io
import warnings

import pytest
import torch

import torch_tos
from disk_faults import fail_nth_write, run_on_full_disk
from torch_tos.cli import main
from torch_tos.energy.runfile import ResultFile, ResultFileRepaired
from torch_tos.energy.runs import COLUMNS
from torch_tos.fileio import save_figure


def runs_file(path, n_runs: int = 17, torn: bool = True) -> bytes:
    """A runs file of ``n_runs`` complete runs and, with ``torn``, a last run cut in its last field."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in range(n_runs):
        w.writerow([{"family": "ffn", "repeat": r, "joules": 12.5}.get(c, "1") for c in COLUMNS])
    data = buf.getvalue().encode()
    if torn:
        data += data.splitlines(keepends=True)[-1][:-4]  # "…,1,1\n" cut inside its last field
    path.write_bytes(data)
    return data


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_a_failed_repair_keeps_every_complete_run_and_names_the_file(tmp_path, monkeypatch, err):
    p = tmp_path / "runs.csv"
    before = runs_file(p)
    fail_nth_write(monkeypatch, 1, err)
    with pytest.raises(OSError) as info, warnings.catch_warnings():
        warnings.simplefilter("error", ResultFileRepaired)  # nothing is reported repaired
        ResultFile(p, COLUMNS).rows()
    assert info.value.errno == err and str(p) in str(info.value)
    assert "incomplete last line" in str(info.value) and "left as it was" in str(info.value)
    assert p.read_bytes() == before and leftovers(tmp_path) == []
    monkeypatch.undo()  # the disk has room again: the repair goes through
    with pytest.warns(ResultFileRepaired, match="line 19: an incomplete last line"):
        rows = ResultFile(p, COLUMNS).rows()
    assert len(rows) == 17 and p.read_bytes() == before[:before.rindex(b"\n") + 1]


def test_a_sweep_on_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    p = tmp_path / "torn.csv"
    before = runs_file(p)
    fail_nth_write(monkeypatch, 1)
    assert main(["sweep", "ffn", "--out", str(p), "--widths", "4", "--epochs", "1", "--repeats", "1",
                 "--meter", "cputime", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot repair {p}" in err and "No space left on device" in err
    assert p.read_bytes() == before


def test_a_repair_keeps_the_lock_for_the_new_file(tmp_path):
    p = tmp_path / "runs.csv"
    runs_file(p, n_runs=2)
    rf = ResultFile(p, COLUMNS)
    with rf.locked(), pytest.warns(ResultFileRepaired):
        old_inode = p.stat().st_ino
        assert len(rf.rows()) == 2
        assert p.stat().st_ino != old_inode  # replaced, not truncated
        import fcntl
        import os

        probe = os.open(p, os.O_RDWR)
        try:  # the new file is locked: another writer waits
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
        rf.append({c: "2" if c == "repeat" else "1" for c in COLUMNS})
    assert len(ResultFile(p, COLUMNS).rows()) == 3


def test_a_writer_that_waited_on_the_replaced_file_takes_the_new_one(tmp_path):
    import threading

    p = tmp_path / "runs.csv"
    runs_file(p, n_runs=2)
    first, second = ResultFile(p, COLUMNS), ResultFile(p, COLUMNS)
    got = []
    with first.locked():
        t = threading.Thread(target=lambda: got.append(second._open_locked()))
        t.start()  # blocks on the lock of the torn file
        with pytest.warns(ResultFileRepaired):
            first.rows()  # the repair renames a new file over it
        first.append({c: "2" if c == "repeat" else "1" for c in COLUMNS})
    t.join(10)
    import os

    fd = got[0]
    try:
        assert os.fstat(fd).st_ino == p.stat().st_ino  # the lock is on the file now at the path
    finally:
        os.close(fd)
    assert len(second.rows()) == 3


def _report():
    return torch_tos.profile(torch.nn.Linear(3, 2), torch.randn(2, 3))


def test_plot_takes_a_positional_path_as_savefig_does(tmp_path):
    fig = _report().plot(tmp_path / "r18.png")
    assert (tmp_path / "r18.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.axes and leftovers(tmp_path) == []
    _report().plot(str(tmp_path / "r18"))  # no suffix: savefig's default format appended
    assert (tmp_path / "r18.png").exists() and not (tmp_path / "r18").exists()
    buf = io.BytesIO()
    _report().plot(buf)  # a file object, as savefig takes one
    assert buf.getvalue()[:4] == b"\x89PNG"


@pytest.mark.parametrize("n", [1, 3])
def test_a_plot_on_a_full_disk_keeps_the_previous_figure(tmp_path, monkeypatch, n):
    p = tmp_path / "r18.svg"
    p.write_text("<svg>the previous figure</svg>")
    report = _report()
    fail_nth_write(monkeypatch, n)
    with pytest.raises(OSError, match=f"cannot write {str(p)!r}.*intact.*No space left"):
        report.plot(p)
    assert p.read_text() == "<svg>the previous figure</svg>" and leftovers(tmp_path) == []


def test_an_unknown_image_format_writes_nothing(tmp_path):
    from matplotlib.figure import Figure

    p = tmp_path / "fig.txt"
    p.write_text("keep")
    with pytest.raises(ValueError, match="txt"):
        save_figure(Figure(), p)
    assert p.read_text() == "keep" and leftovers(tmp_path) == []


def test_on_a_real_full_disk_every_previous_file_is_intact(tmp_path):
    result = run_on_full_disk(tmp_path, """
        import csv, io, warnings
        from pathlib import Path

        from torch_tos.cli import main
        from torch_tos.energy.runfile import ResultFile
        from torch_tos.energy.runs import COLUMNS
        from torch_tos.fileio import atomic_write_text

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\\n")
        w.writerow(COLUMNS)
        for r in range(17):
            w.writerow([r if c == "repeat" else 1 for c in COLUMNS])
        runs = buf.getvalue().encode()
        runs += runs.splitlines(keepends=True)[-1][:-4]
        Path("torn.csv").write_bytes(runs)
        Path("law.json").write_text('{"law": "previous"}')
        Path("r.html").write_text("<html>previous</html>")
        FILL()

        try:
            atomic_write_text("law.json", "x" * 100000)
        except OSError as e:
            assert "law.json" in str(e) and e.errno == 28, e
        else:
            raise AssertionError("a write on a full disk succeeded")
        assert Path("law.json").read_text() == '{"law": "previous"}'

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ResultFile("torn.csv", COLUMNS).rows()
            except OSError as e:
                assert "cannot repair torn.csv" in str(e), e
            else:
                raise AssertionError("a repair on a full disk succeeded")
        assert Path("torn.csv").read_bytes() == runs

        code = main(["profile", "torch.nn:Linear", "--model-kwargs", '{"in_features": 64, "out_features": 64}',
                     "--input-shape", "2,64", "--format", "html", "--out", "r.html"])
        assert code == 2, code
        assert Path("r.html").read_text() == "<html>previous</html>"
        assert not [p for p in Path(".").iterdir() if p.name.endswith(".tmp")]
        print("OK")
    """)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-2000:]
    assert "cannot write 'r.html'" in result.stderr and "No space left on device" in result.stderr
