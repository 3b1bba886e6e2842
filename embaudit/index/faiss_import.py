"""faiss, imported quietly: on first use, on the BLAS kernel numpy uses, with its import-time
warnings kept inside; what it prints while it works (a clustering with fewer points than it
recommends, say) is captured, never shown, and its errors are cut to their useful part.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

#: The variable an OpenBLAS library reads as it loads: the kernel to use instead of detecting one.
CORETYPE = "OPENBLAS_CORETYPE"
#: The x86-64 kernels every OpenBLAS since 0.3.11 accepts by name (faiss-cpu's wheels bundle
#: 0.3.15), and the newer kernels it would not know mapped to the nearest it does. An unknown
#: name is not a request to detect: OpenBLAS then falls back to its generic kernel.
_KNOWN_KERNELS = frozenset(
    (
        "Katmai Coppermine Northwood Prescott Banias Atom Core2 Penryn Dunnington Nehalem "
        "Athlon Opteron Opteron_SSE3 Barcelona Nano Sandybridge Bulldozer Piledriver Haswell "
        "Steamroller Excavator Zen SkylakeX Cooperlake"
    )
    .lower()
    .split()
)
_NEWER_KERNELS = {"sapphirerapids": "Cooperlake"}  # AVX-512 with BF16 both
#: One import of faiss at a time: it changes the environment and file descriptors 1 and 2.
_IMPORT_LOCK = threading.Lock()


def numpy_blas_kernel(libraries: list[dict[str, Any]] | None = None) -> str | None:
    """The kernel the OpenBLAS loaded before faiss (numpy's) chose for this CPU, from
    threadpoolctl's description of the loaded libraries (``libraries``, read now when None);
    None when that BLAS is not OpenBLAS or does not say."""
    if libraries is None:
        from threadpoolctl import threadpool_info

        try:
            libraries = threadpool_info()
        except Exception:  # a library it cannot read: no kernel to hand over
            return None
    for library in libraries:
        if library.get("internal_api") == "openblas" and library.get("architecture"):
            return str(library["architecture"])
    return None


def kernel_for_faiss(kernel: str | None) -> str | None:
    """The name to give faiss's OpenBLAS for numpy's ``kernel``: the same when every OpenBLAS
    faiss bundles knows it, the nearest older kernel for a newer one, else None (let it detect)."""
    if kernel is None:
        return None
    if kernel.lower() in _KNOWN_KERNELS:
        return kernel
    return _NEWER_KERNELS.get(kernel.lower())


@cache
def _faiss() -> Any:
    """The faiss module, loaded quietly and on the BLAS kernel numpy uses.

    Its SWIG bindings warn at import on recent Pythons: not the user's. The faiss-cpu wheels
    bundle an OpenBLAS older than numpy's (0.3.15 in faiss-cpu 1.15), which gives a CPU newer
    than itself a generic kernel: on a virtualized Xeon it chose Prescott (SSE3) where numpy's
    chose SkylakeX, and an ``--index IVF1024,Flat`` audit of 200,000 x 768 rows took 56 s
    instead of 28 s, its k-means 27.6 s instead of 7.0 s (benchmarks/bench_faiss_kernel.py).
    Unless the user chose a kernel (``OPENBLAS_CORETYPE``), faiss's OpenBLAS is told, for the
    time of the import, the one numpy's detected on the same CPU (:func:`kernel_for_faiss`: a
    name it knows); what the import prints is not shown."""
    with _IMPORT_LOCK:
        kernel = None
        if CORETYPE not in os.environ and "faiss" not in sys.modules:
            kernel = kernel_for_faiss(numpy_blas_kernel())
        if kernel is not None:
            os.environ[CORETYPE] = kernel
        try:
            with warnings.catch_warnings(), _native_output_captured():
                warnings.simplefilter("ignore")
                import faiss
        finally:
            if kernel is not None:
                os.environ.pop(CORETYPE, None)
    return faiss


@contextmanager
def _native_output_captured() -> Iterator[list[str]]:
    """Send what native code prints (file descriptors 1 and 2) to a temporary file for the
    duration; yields a list that receives the captured text. faiss prints warnings with
    fprintf, which no Python setting silences. Where a descriptor is closed (a daemon's), there
    is nothing to keep clean: nothing is captured."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    captured: list[str] = []
    saved: list[int] = []
    try:
        saved += [os.dup(1)]
        saved += [os.dup(2)]
    except OSError:
        for descriptor in saved:
            os.close(descriptor)
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def _faiss_problem(error: Exception) -> str:
    """The useful part of a faiss error: its message without the C++ function and source line
    ("could not parse index string Foo", "'d % M == 0' failed: ...")."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^Error in .*? at \S+:\d+: ", "", text)
    return text.removeprefix("Error: ")
