"""What searching a sample of the rows changes in EA301 and EA302 (``gauge_rows``).

    python benchmarks/gauge_rows.py [--n 1000000] [--d 768] [--rows 25000,100000,400000,all]

On the three kinds of 1M × 768 exports of bench_realistic.py (normalized clustered, log-normal
norms, sentence-encoder-like), audits EA301 and EA302 with the gauge queries searching
``gauge_rows`` rows drawn at random, and every row (``all``), at seed 0, and the default
``gauge_rows`` at seeds 1 and 2 as well: the value, its 95% interval (± 1.96 standard errors), the
status under ``--trained-with unknown`` and the audit's wall time. The rows of the sample are a
random draw like the queries, so a value measured on a sample is an estimate of the overlap
among that many random rows of the corpus; the rows printed side by side show how far it sits
from the overlap among every row.

With ``--draws N``, a second table: at seed 0 (the same queries and gauges), N independent
draws of the default number of gauge rows (their random stream changed), and the spread of
EA301's and EA302's values over those draws next to their reported standard errors: how far
the draw of the rows alone moves a value, against an error computed over the queries, each of
which carries the draw of the rows around it.

Prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402
from bench_realistic import KINDS, export, warm  # noqa: E402

import embaudit  # noqa: E402
import embaudit.measurement.steps as steps  # noqa: E402
from embaudit.measurement.sampling import Sampling  # noqa: E402

Z95 = 1.96
#: The sample of rows whose draws ``--draws`` compares (the default of earlier releases).
DRAW_ROWS = 100_000


def audited(path: Path, rows: int | None, seed: int) -> tuple[dict[str, str], float]:
    """EA301 and EA302 as 'value ± 1.96 SE (status)', and the audit's wall seconds."""
    started = time.perf_counter()
    report = embaudit.audit(
        str(path), sampling=Sampling(gauge_rows=rows), seed=seed, select=["EA301", "EA302"]
    )
    seconds = time.perf_counter() - started
    cells = {}
    for code in ("EA301", "EA302"):
        check = report.check(code)
        error = check.metrics.get("standard_error") or 0.0
        cells[code] = f"{check.value:.3f} ± {Z95 * error:.3f} ({check.status.value})"
        if check.metrics.get("sampling"):
            cells[code] += " after rounds"
    return cells, seconds


def row_draws(path: Path, draws: int) -> str:
    """A Markdown row: EA301's and EA302's values over ``draws`` draws of the gauge rows (the
    rest of the audit fixed: seed 0), their standard deviation, and the mean reported errors."""
    values: dict[str, list[float]] = {"EA301": [], "EA302": []}
    errors: dict[str, list[float]] = {"EA301": [], "EA302": []}
    drawn = steps.gauge_corpus
    try:
        for draw in range(draws):
            # Another draw of the rows alone: gauge_corpus's redraw, the rest of the audit fixed.
            steps.gauge_corpus = functools.partial(drawn, redraw=draw)
            report = embaudit.audit(
                str(path),
                seed=0,
                sampling=Sampling(gauge_rows=DRAW_ROWS),
                select=["EA301", "EA302"],
            )
            for code in values:
                check = report.check(code)
                values[code].append(float(check.value))
                errors[code].append(float(check.metrics.get("standard_error") or 0.0))
    finally:
        steps.gauge_corpus = drawn
    cells = []
    for code in values:
        spread = statistics.stdev(values[code]) if draws > 1 else 0.0
        cells.append(
            f"{min(values[code]):.3f}–{max(values[code]):.3f} | {spread:.4f} | "
            f"{statistics.mean(errors[code]):.4f}"
        )
    return " | ".join(cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--rows", default="25000,100000,400000,all")
    parser.add_argument("--draws", type=int, default=0, help="draws of the rows alone")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    default = DRAW_ROWS
    sizes = [r for r in args.rows.split(",") if r]
    settings: list[tuple[int | None, int]] = [(None if r == "all" else int(r), 0) for r in sizes]
    settings += [(None, 1), (None, 2)] if settings else []
    rows_flag = args.rows or "''"
    lines = [
        f"## EA301 and EA302 on a sample of the rows ({args.n:,} × {args.d})",
        "",
        f"Machine: {machine()}. `python benchmarks/gauge_rows.py --n {args.n} --d {args.d} "
        f"--rows {rows_flag} --draws {args.draws}`.",
    ]
    if settings:
        lines += [
            "",
            "Value ± 1.96 standard errors (status); seconds of the audit (EA301 and EA302 "
            "selected, the whole pass).",
            "",
            "| data | gauge rows | seed | EA301 (s = 0.5) | EA302 | audit (s) |",
            "|---|---|---|---|---|---|",
        ]
    for kind in kinds if settings else ():
        path = export(kind, args.n, args.d)
        warm(path)
        for rows, seed in settings:
            cells, seconds = audited(path, rows, seed)
            label = "every row" if rows is None or rows >= args.n else f"{rows:,}"
            lines.append(
                f"| {kind} | {label} | {seed} | {cells['EA301']} | {cells['EA302']} | "
                f"{seconds:.1f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    if args.draws:
        lines += [
            "",
            f"{args.draws} draws of the {default:,} gauge rows, seed 0 otherwise: the range of "
            "the values, their standard deviation over the draws, and the mean standard error "
            "the audits reported.",
            "",
            "| data | EA301 range | EA301 sd over draws | EA301 reported error | EA302 range | "
            "EA302 sd over draws | EA302 reported error |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind in kinds:
            path = export(kind, args.n, args.d)
            warm(path)
            lines.append(f"| {kind} | {row_draws(path, args.draws)} |")
            print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
