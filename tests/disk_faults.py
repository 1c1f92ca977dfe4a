"""Disk faults for tests of torch_tos's writers: a fake that fails the n-th write, and a real full
file system (a 64 KiB tmpfs in a private mount namespace) where the platform allows one."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest


class _FailingFile:
    """A file object whose writes fail from the ``n``-th on (counted over every file opened)."""

    def __init__(self, f, state):
        self._f, self._state = f, state

    def write(self, data):
        self._state["writes"] += 1
        if self._state["writes"] >= self._state["n"]:
            raise OSError(self._state["errno"], os.strerror(self._state["errno"]))
        return self._f.write(data)

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._f, name)


def fail_nth_write(monkeypatch, n: int = 1, err: int = errno.ENOSPC) -> dict:
    """From now on, the ``n``-th write to a file opened by ``os.fdopen`` (what
    :mod:`torch_tos.fileio` writes through) and every later one raise ``OSError(err)``; returns
    the counter (``state["writes"]``)."""
    state = {"n": n, "errno": err, "writes": 0}
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        return _FailingFile(real(fd, *args, **kwargs), state)

    monkeypatch.setattr(os, "fdopen", fdopen)
    return state


def full_disk_available() -> str | None:
    """Why a private full tmpfs cannot be mounted here (``None`` when it can)."""
    if not sys.platform.startswith("linux"):
        return "a private tmpfs needs Linux mount namespaces"
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null "
                            "|| mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a user namespace here ({probe.stderr.decode().strip()[:80]})"
    return None


def run_on_full_disk(tmp_path, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the Python ``script`` with its working directory on a 64 KiB tmpfs mounted over
    ``tmp_path / "disk"`` (private to the process); ``FILL()`` in the script fills the disk.
    Skips the test where such a mount is impossible."""
    why = full_disk_available()
    if why:
        pytest.skip(why)
    disk = tmp_path / "disk"
    disk.mkdir()
    prelude = textwrap.dedent("""
        import os

        def FILL():
            fd = os.open(".filler", os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, b"x" * 512)
            except OSError:
                pass
            finally:
                os.close(fd)
    """)
    (tmp_path / "script.py").write_text(prelude + textwrap.dedent(script))
    import torch_tos

    root = os.path.dirname(os.path.dirname(os.path.abspath(torch_tos.__file__)))  # this checkout's torch_tos
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = (f"mount -t tmpfs -o size=64k tmpfs {disk} && cd {disk} && "
           f"{sys.executable} {tmp_path / 'script.py'}")
    return subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=timeout, env=env)
