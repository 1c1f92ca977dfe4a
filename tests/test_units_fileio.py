"""Numbers for people (torch_tos.units) and atomic writes (torch_tos.fileio)."""

import errno
import math
import os

import pytest

from torch_tos import fileio
from torch_tos.units import duration, energy, si


@pytest.mark.parametrize("value, text", [
    (0, "0"), (7, "7"), (999, "999"), (12.345, "12.3"), (0.5, "500m"), (999.96, "1K"), (2.25e6, "2.25M"),
    (553760488702595.5, "554T"), (1.87e18, "1.87E"), (3e21, "3Z"), (4.5e24, "4.5Y"), (1.5e27, "1500Y"),
    (-2.5e9, "-2.5G"), (float("nan"), "nan"), (float("inf"), "inf"),
])
def test_si_prefixes_from_yocto_to_yotta(value, text):
    assert si(value) == text


def test_si_with_a_unit_uses_lower_case_kilo():
    assert si(1500, "B") == "1.5 kB"
    assert si(2.5e-6, "s") == "2.5 µs"


@pytest.mark.parametrize("joules, text", [
    (3.2e-3, "3.2 mJ"), (412, "412 J"), (1234, "1.23 kJ"), (3600, "1 Wh"), (9000, "2.5 Wh"),
    (5.1e7, "14.2 kWh"), (1.2e10, "3.33 MWh"), (math.inf, "inf J"),
])
def test_energy_in_joules_then_watt_hours(joules, text):
    assert energy(joules) == text


@pytest.mark.parametrize("seconds, text", [
    (850e-6, "850 µs"), (12.4, "12.4 s"), (61, "1.02 min"), (4000, "1.11 h"), (200000, "2.31 d"), (0, "0 s"),
])
def test_duration_in_seconds_minutes_hours_days(seconds, text):
    assert duration(seconds) == text


def test_atomic_write_replaces_the_file_and_keeps_its_permissions(tmp_path):
    p = tmp_path / "law.json"
    p.write_text("old")
    os.chmod(p, 0o640)
    fileio.atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert p.stat().st_mode & 0o777 == 0o640
    assert [f.name for f in tmp_path.iterdir()] == ["law.json"]  # no temporary file left


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch, fail_at):
    p = tmp_path / "runs.csv"
    p.write_text("17 complete runs\n")

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_at == "fsync":
        monkeypatch.setattr(fileio.os, "fsync", enospc)
    elif fail_at == "replace":
        monkeypatch.setattr(fileio.os, "replace", enospc)
    with pytest.raises(OSError) as info:
        with fileio.atomic_writer(p) as f:
            if fail_at == "write":
                enospc()
            f.write("partial")
    assert info.value.errno == errno.ENOSPC
    assert str(p) in str(info.value) and "intact" in str(info.value)
    assert p.read_text() == "17 complete runs\n"
    assert [f.name for f in tmp_path.iterdir()] == ["runs.csv"]


def test_an_exception_in_the_block_writes_nothing(tmp_path):
    p = tmp_path / "out.html"
    with pytest.raises(KeyError):
        with fileio.atomic_writer(p) as f:
            f.write("<html>")
            raise KeyError("boom")
    assert not p.exists() and list(tmp_path.iterdir()) == []


def test_missing_folder_and_folder_target_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fileio.atomic_write_text(tmp_path / "nope" / "law.json", "x")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        fileio.atomic_write_text(tmp_path, "x")


def test_binary_writes(tmp_path):
    p = tmp_path / "plot.png"
    fileio.atomic_write_bytes(p, b"\x89PNG")
    assert p.read_bytes() == b"\x89PNG"


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "law.json").write_text("old")
    os.chmod(shared / "law.json", 0o640)
    link = tmp_path / "law.json"
    link.symlink_to(shared / "law.json")
    fileio.atomic_write_text(link, "new")
    assert link.is_symlink() and (shared / "law.json").read_text() == "new"
    assert (shared / "law.json").stat().st_mode & 0o777 == 0o640
    assert sorted(f.name for f in shared.iterdir()) == ["law.json"]  # the temporary file was beside the target


def test_a_new_file_gets_the_umask_default_without_the_umask_being_changed(tmp_path, monkeypatch):
    previous = os.umask(0o027)
    try:
        def no_umask_change(mask):  # reading the umask must not set it (other threads create files)
            raise AssertionError(f"os.umask({mask:o}) called")

        monkeypatch.setattr(fileio.os, "umask", no_umask_change)
        fileio.atomic_write_text(tmp_path / "new.csv", "x")
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o640
