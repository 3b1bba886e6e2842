"""stdout carries the report and nothing else (docs/output.md), whatever a library prints.

While a command computes, :func:`stdout_to_stderr` sends everything written to stdout to stderr
instead: Python code writing to ``sys.stdout`` (Ray's driver threads print there) and C code
writing to file descriptor 1, through C stdio or not. The command writes its report after the
block, to the real stdout.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point ``sys.stdout`` and file descriptor 1 at stderr for the block, then restore both."""
    python_stdout = sys.stdout
    _flush_all(python_stdout)  # what was written before goes where it was meant to
    saved_fd = _point_fd1_at_stderr()
    sink: TextIO | None = None
    if sys.stderr is not None:
        sys.stdout = sys.stderr
    else:  # no stderr at all (pythonw): what the block prints is dropped
        sink = sys.stdout = Path(os.devnull).open("w", encoding="utf-8")  # noqa: SIM115
    try:
        yield
    finally:
        _flush_all(sys.stdout)  # still on stderr: C stdio buffers and sys.__stdout__ included
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        sys.stdout = python_stdout
        if sink is not None:
            sink.close()


def _point_fd1_at_stderr() -> int | None:
    """Make descriptor 1 a copy of 2 (or of /dev/null when 2 is closed); return a copy of the
    old 1 to restore, or None when 1 is not open (nothing can reach stdout through it then)."""
    try:
        saved = os.dup(1)
    except OSError:
        return None
    try:
        os.dup2(2, 1)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    return saved


def _flush_all(stream: TextIO | None) -> None:
    """Flush ``stream``, Python's original stdout, and every C stdio buffer (a C library's
    ``printf`` is buffered when stdout is not a terminal and would otherwise reach the real
    stdout at exit, after the report)."""
    for python_stream in (stream, sys.__stdout__):
        if python_stream is not None:
            with suppress(OSError, ValueError):  # closed, or a broken pipe
                python_stream.flush()
    with suppress(OSError, AttributeError, TypeError):  # no C library to ask (Windows)
        ctypes.CDLL(None).fflush(None)
