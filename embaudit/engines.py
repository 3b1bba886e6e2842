"""Where the pass over the data runs: in this process, or mapped over a Ray cluster.

Every pass is the same map and reduce, whichever engine runs it:

    fragments ──map──> (PartStats, partial top-k lists, sample rows) per fragment
              ──reduce──> ScanStats (fragments merged in row order), merged top-k, the sample

The cut into fragments depends on the data only (:meth:`EmbeddingSource.fragments`), every
fragment is read in the same chunks, and the reduce folds the statistics in row order, so both
engines compute the same floating-point sums. The top-k merge is exact and order-free (best score,
then lowest row). Random choices are positions drawn from the seed before the pass, so they do not
depend on the engine either: ``--engine ray`` and ``--engine local`` give the same report.

The Ray engine needs the optional ``ray`` dependency (``pip install 'embaudit[ray]'``). A task
that dies (worker or node lost) is retried; a fragment that cannot be parsed is an input error
naming its file; a fragment lost for good stops the run: no report is built from part of the data.
Ray's own console output (what tasks print, the raylet's messages) stays off unless
``EMBAUDIT_RAY_LOGS=1`` asks for it.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from embaudit.errors import EmbauditError, IncompleteError, UsageError
from embaudit.map_step import (
    PassPlan,
    PassResult,
    Worker,
    add_timings,
    map_fragment,
)
from embaudit.sources import ArraySource, EmbeddingSource, Fragment
from embaudit.sources.base import available_cores
from embaudit.stats import (
    Duplicates,
    PartMerge,
    ScanStats,
    finish,
    sketched,
)
from embaudit.stats.shuffle import bucket_count, reduce_bucket, split_part

Ints = npt.NDArray[np.int64]
Values = npt.NDArray[np.floating[Any]]

ENGINES = ("local", "ray")
#: Attempts of a Ray task after the first, when its worker or node dies.
RAY_TASK_RETRIES = 3
RAY_INSTALL = "pip install 'embaudit[ray]'"
#: Set to 1 to see Ray's own output: what tasks print, the raylet's messages (a worker died, a
#: task is retried) and Ray's INFO log. The command line shows it on stderr.
RAY_LOGS_VARIABLE = "EMBAUDIT_RAY_LOGS"


class Engine(ABC):
    """Runs passes over a source and fetches rows by position."""

    name: str

    @abstractmethod
    def run(
        self,
        source: EmbeddingSource,
        plan: PassPlan,
        *,
        chunk_rows: int | None = None,
        on_rows: Callable[[int], None] | None = None,
    ) -> PassResult:
        """One pass: the statistics of every row, and what ``plan`` asks for."""

    def take(self, source: EmbeddingSource, rows: Ints) -> Values:
        """The rows at the given global positions, in the order given."""
        return source.take(rows)

    @staticmethod
    def check_source(source: EmbeddingSource) -> None:
        """Raise a UsageError when this engine cannot read ``source``."""
        del source  # the base engine reads every source

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the engine started."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class LocalEngine(Engine):
    """Fragments one after the other in this process, each read by ``workers`` threads (default:
    one per core, at most :data:`MAX_WORKERS`) that take its chunks in turn; each thread folds
    a chunk's statistics and searches it with its own float32 products, BLAS confined to
    ``cores // workers`` threads for the pass (threadpoolctl; ``blas_threads`` to set it, e.g. 1
    to do the work of one single-CPU cluster task), so that no core waits on another stage (see
    :func:`fold_fragment`).

    Each worker's search runs through all fragments, so its running k-th scores prune its later
    chunks, and it prunes by the highest bar any worker of the search has reached (its own rows
    alone raise its bar more slowly); the workers' lists merge at the end, exactly (best score,
    then lowest row)."""

    name = "local"

    def __init__(self, workers: int | None = None, blas_threads: int | None = None) -> None:
        cores = _cores()
        self.workers = max(1, min(cores, MAX_WORKERS) if workers is None else workers)
        self.blas_threads = max(1, cores // self.workers if blas_threads is None else blas_threads)

    def run(
        self,
        source: EmbeddingSource,
        plan: PassPlan,
        *,
        chunk_rows: int | None = None,
        on_rows: Callable[[int], None] | None = None,
    ) -> PassResult:
        parts = PartMerge(source)  # folded in row order as they come
        timings: dict[str, float] = {}
        workers = Worker.team(plan, self.workers)
        try:
            with threadpool_limits(self.blas_threads, user_api="blas"):
                for fragment in source.fragments():
                    result = map_fragment(
                        source,
                        fragment,
                        plan,
                        workers=workers,
                        chunk_rows=chunk_rows,
                        on_chunk=on_rows,
                    )
                    if result.part is not None:
                        parts.add(result.part)
                    add_timings(timings, result.timings)
        finally:  # a pass that fails keeps no memory in the plan's searches either
            for worker in workers:
                worker.release()
        mark = time.perf_counter()
        for worker in workers[1:]:
            worker.merge_into(plan)
        timings["merge"] = time.perf_counter() - mark
        source.confirm_unchanged()
        stats = _reduce(self, source, parts, timings) if plan.statistics else None
        return PassResult(stats, plan.sample, timings)


#: At most this many threads read one pass (each holds a chunk, its unit rows and its
#: products: about 250 MB at 768 dimensions and the default sample sizes).
MAX_WORKERS = 4


#: The cores this process may run on (a module attribute, so that tests can pretend others).
_cores = available_cores


def _reduce(
    engine: Engine,
    source: EmbeddingSource,
    parts: PartMerge,
    timings: dict[str, float],
    duplicates: Duplicates | None = None,
) -> ScanStats:
    """The reduce step on the driver, timed: merge in row order, then the duplicate check
    (unless the engine found the ``duplicates`` itself)."""
    started = time.perf_counter()
    stats = finish(source, parts, functools.partial(engine.take, source), duplicates)
    timings["reduce"] = time.perf_counter() - started
    return stats


class RayEngine(Engine):
    """Fragments mapped to Ray tasks, merged on the driver in row order.

    ``address`` is a running cluster (``auto``, ``ray://host:10001``, ``host:6379``). Without
    it: the cluster this process already joined, else the one in ``RAY_ADDRESS``, else a new
    local cluster started for the run (never a leftover one found on the machine). Tasks whose
    worker dies are retried up to :data:`RAY_TASK_RETRIES` times. Used as a context manager,
    the engine disconnects from (or stops) what it joined (or started) at the end. While it is
    open, what tasks print and the raylet's messages stay off the console (:class:`_RayConsole`)
    unless :data:`RAY_LOGS_VARIABLE` is set.
    """

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError(f"--engine ray needs Ray: {RAY_INSTALL}") from None
        self._ray = ray
        self._started = False
        show_logs = os.environ.get(RAY_LOGS_VARIABLE, "") not in ("", "0")
        if not ray.is_initialized():
            target = address or os.environ.get("RAY_ADDRESS") or None
            _probe(target)
            try:
                ray.init(
                    address=target or "local",
                    include_dashboard=False,
                    log_to_driver=show_logs,
                    logging_level=logging.INFO if show_logs else logging.ERROR,
                    configure_logging=True,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                problem = (
                    f"--ray-address {target}: cannot join the Ray cluster"
                    if target
                    else "--engine ray: cannot start a local Ray cluster"
                )
                raise UsageError(f"{problem}: {_first_line(exc)}") from None
            self._started = True
        self._quiet = not show_logs and _RayConsole.hold()
        # One core per task; fragments spread over the nodes (their reads are the bottleneck
        # a cluster is for); a task whose worker dies is retried, an exception is not (a corrupt
        # fragment fails the same way every time).
        remote = ray.remote(
            num_cpus=1,
            max_retries=RAY_TASK_RETRIES,
            retry_exceptions=False,
            scheduling_strategy="SPREAD",
        )
        self._map, self._take = remote(_remote_map), remote(_remote_take)
        self._reduce_bucket = remote(reduce_bucket)

    @staticmethod
    def check_source(source: EmbeddingSource) -> None:
        from embaudit.sources.parquet import ParquetSource
        from embaudit.sources.shards import ShardedSource

        if isinstance(source, ParquetSource | ShardedSource):
            return
        if isinstance(source, ArraySource) and (not source.mapped or source.reopen is not None):
            return
        raise UsageError(
            "--engine ray reads parquet datasets (a file, a directory or a URI such as "
            "s3://bucket/prefix) and .npy, .npz, .fvecs/.bvecs, .fbin (and the other big-ann "
            "files) and .safetensors files and directories (or URI prefixes) of them; "
            f"{source.path} is "
            f"{source.format}: convert it or use --engine local"
        )

    def run(
        self,
        source: EmbeddingSource,
        plan: PassPlan,
        *,
        chunk_rows: int | None = None,
        on_rows: Callable[[int], None] | None = None,
    ) -> PassResult:
        self.check_source(source)
        ray = self._ray
        source_ref, plan_ref = ray.put(source), ray.put(plan)
        sketch = sketched(source.n)
        # A source summarized by a sketch has its duplicates found by a shuffle on the workers.
        fragments = source.fragments()
        buckets = bucket_count(source.n, len(fragments)) if sketch and plan.statistics else 0
        pending: dict[Any, Fragment] = {}
        outputs = []
        for fragment in fragments:
            refs: Any = self._map.options(num_returns=buckets + 1).remote(
                source_ref, fragment, plan_ref, chunk_rows, sketch, buckets
            )
            refs = [refs] if not buckets else refs
            pending[refs[0]] = fragment
            outputs.append(refs[1:])
        reduces = {
            self._reduce_bucket.remote(source_ref, *[output[b] for output in outputs]): Fragment(
                b, 0, source.n, f"{source.path}: duplicate bucket {b + 1} of {buckets}"
            )
            for b in range(buckets)
        }
        parts = PartMerge(source)  # folded in row order as they come
        timings: dict[str, float] = {}
        for fragment, result in self._completed(pending):
            if result.part is not None:
                parts.add(result.part)
            add_timings(timings, result.timings)
            mark = time.perf_counter()
            for searched, lists in zip(plan.searches, result.lists, strict=True):
                searched.search.absorb(lists)
            if plan.sample is not None and result.sample is not None:
                plan.sample.absorb(result.sample)
            timings["merge"] = timings.get("merge", 0.0) + time.perf_counter() - mark
            if on_rows is not None:
                on_rows(fragment.n)
        found = [duplicates for _, duplicates in self._completed(reduces)]
        source.confirm_unchanged()
        duplicates = Duplicates.merged(found) if buckets else None
        stats = _reduce(self, source, parts, timings, duplicates) if plan.statistics else None
        return PassResult(stats, plan.sample, timings)

    def take(self, source: EmbeddingSource, rows: Ints) -> Values:
        """Rows fetched by the workers, one task per fragment that holds some of them."""
        self.check_source(source)
        rows = np.asarray(rows, dtype=np.int64)
        fragments = source.fragments()
        starts = np.array([fragment.start for fragment in fragments])
        owner = np.searchsorted(starts, rows, side="right") - 1
        out = np.empty((len(rows), source.d), dtype=source.dtype)
        source_ref = self._ray.put(source)
        pending = {}
        for index in np.unique(owner).tolist():
            where = np.flatnonzero(owner == index)
            pending[self._take.remote(source_ref, rows[where])] = (fragments[index], where)
        for (_, where), values in self._completed(pending):
            out[where] = values
        return out

    def _completed(self, pending: dict[Any, Any]) -> Iterator[tuple[Any, Any]]:
        """(key, result) of each task as it finishes; errors name the fragment's file."""
        ray = self._ray
        waiting = list(pending)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            ref = done[0]
            key = pending[ref]
            fragment = key[0] if isinstance(key, tuple) else key
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, EmbauditError):
                    raise cause from None  # an input error names its own file
                if isinstance(cause, ImportError):
                    raise UsageError(
                        f"the Ray workers cannot import what embaudit needs ({cause}): install "
                        f"{RAY_INSTALL!r} on every node, or give the cluster a runtime_env"
                    ) from None
                if isinstance(cause, Exception):
                    raise cause from error  # a bug: reported as in the local engine
                raise
            except ray.exceptions.RayError as error:  # worker, node or object lost for good
                raise IncompleteError(
                    fragment.where,
                    f"rows {fragment.start:,}–{fragment.stop:,} were not read: the Ray task "
                    f"failed {RAY_TASK_RETRIES + 1} times ({_first_line(error)})",
                ) from None
            yield key, value

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()  # joins the threads that print before the console is back
            self._started = False
        if self._quiet:
            _RayConsole.release()
            self._quiet = False


class _RayConsole:
    """Ray's driver prints to ``sys.stdout`` from background threads: what tasks print (with
    ``log_to_driver``) and, whatever ``log_to_driver`` says, the raylet's error messages such as
    "(raylet) A worker died or was killed while executing a task". Those arrive some time after
    the task's own error, so they can land in the middle of whatever the program writes next.
    Both pass through one switch, ``ray._private.worker._worker_logs_enabled`` (the one Ray's
    debugger turns off); it is off while any Ray engine is open and back to what it was once
    the last one closes. A Ray without that switch keeps its console."""

    _open = 0
    _before = True

    @classmethod
    def hold(cls) -> bool:
        worker: Any = sys.modules.get("ray._private.worker")
        if worker is None or not isinstance(getattr(worker, "_worker_logs_enabled", None), bool):
            return False
        if cls._open == 0:
            cls._before = worker._worker_logs_enabled
        worker._worker_logs_enabled = False
        cls._open += 1
        return True

    @classmethod
    def release(cls) -> None:
        cls._open -= 1
        worker: Any = sys.modules.get("ray._private.worker")
        if cls._open == 0 and worker is not None:
            worker._worker_logs_enabled = cls._before


def _remote_map(
    source: EmbeddingSource,
    fragment: Fragment,
    plan: PassPlan,
    chunk_rows: int | None,
    sketch: bool,
    buckets: int,
) -> Any:
    """The map task: the fragment's result, then (with ``buckets``) its shuffle's buckets."""
    result = map_fragment(source, fragment, plan, chunk_rows=chunk_rows, sketch=sketch)
    if not buckets or result.part is None:
        return result
    return (result, *split_part(result.part, buckets))


def _remote_take(source: EmbeddingSource, rows: Ints) -> Values:
    return source.take(rows)


#: Seconds to wait for a cluster's head to accept a connection before giving up.
PROBE_SECONDS = 5.0


def _probe(address: str | None) -> None:
    """Fail fast, with one line, when ``host:port`` (or ``ray://host:port``) does not answer:
    Ray itself retries an unreachable head for minutes, logging from C++ all along."""
    if not address or address in ("auto", "local"):
        return
    location = address.removeprefix("ray://")
    host, _, port = location.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise UsageError(
            f"--ray-address {address}: no Ray cluster answers there "
            f"({exc.strerror or type(exc).__name__})"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def make_engine(
    name: str, address: str | None = None, sources: Iterable[EmbeddingSource] = ()
) -> Engine:
    """The engine called ``name`` ("local" or "ray"); ``address`` is the Ray cluster. The
    ``sources`` it will read are checked first, before a cluster is started or joined."""
    if name not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if name == "local" and address is not None:
        raise UsageError("--ray-address applies to --engine ray")
    kind = LocalEngine if name == "local" else RayEngine
    for source in sources:
        kind.check_source(source)
    return kind() if kind is LocalEngine else RayEngine(address)
