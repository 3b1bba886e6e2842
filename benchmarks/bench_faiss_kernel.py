"""An --index audit with faiss on numpy's BLAS kernel, against faiss's bundled OpenBLAS left to
detect the CPU itself.

    python benchmarks/bench_faiss_kernel.py [--n 200000] [--d 768] [--spec IVF1024,Flat] [--reps 2]

faiss-cpu's Linux wheels bundle an OpenBLAS (0.3.15 in faiss-cpu 1.15) older than numpy's; on a
CPU newer than itself it falls back to a generic kernel (Prescott, SSE3, on a virtualized Xeon
where numpy's OpenBLAS runs SkylakeX), and everything faiss does with BLAS — k-means training
of IVF and PQ, the assignment of added rows, flat search of many queries — runs on it.
``embaudit.index.faiss_import._faiss`` hands faiss's OpenBLAS numpy's kernel at import. This runs
``embaudit check FILE --trained-with cosine --index SPEC --format json`` in child processes,
interleaved, ``--reps`` times each:

* ``numpy's kernel``: embaudit as it ships;
* ``faiss's own``: the same with the kernel hand-over disabled (``numpy_blas_kernel`` patched to
  return None), which is what embaudit did before.

It prints the kernels, each run's wall time and stages, EA701's recall and the ratio of the
medians. The export is bench_index.py's (clustered rows, log-normal norms, σ = 1), generated
once under benchmarks/data/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import lognormal_export, machine, warm  # noqa: E402

_AS_BEFORE = (
    "import sys, embaudit.index.faiss_import as index; "
    "index.numpy_blas_kernel = lambda libraries=None: None; "
    "from embaudit.cli import main; sys.argv[0] = 'embaudit'; sys.exit(main())"
)
_AS_SHIPPED = (
    "import sys; from embaudit.cli import main; sys.argv[0] = 'embaudit'; sys.exit(main())"
)
_KERNELS = (
    "import json, sys; from threadpoolctl import threadpool_info; "
    "import embaudit.index.faiss_import as index; exec(sys.argv[1]); index._faiss(); "
    "print(json.dumps([(i['filepath'].rsplit('/', 1)[-1], i.get('architecture')) "
    "for i in threadpool_info() if i['internal_api'] == 'openblas']))"
)


def kernels(before: bool) -> str:
    patch = "index.numpy_blas_kernel = lambda libraries=None: None" if before else "pass"
    done = subprocess.run(
        [sys.executable, "-c", _KERNELS, patch], capture_output=True, text=True, check=True
    )
    return ", ".join(f"{name}: {kernel}" for name, kernel in json.loads(done.stdout))


def audit(program: str, path: Path, spec: str) -> tuple[float, dict]:
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    command = [sys.executable, "-c", program, "check", str(path), "--trained-with", "cosine"]
    command += ["--index", spec, "--format", "json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"embaudit exited {done.returncode}: {done.stderr.strip()}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--spec", default="IVF1024,Flat")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    path = lognormal_export(
        HERE / "data" / f"lognormal_{args.n // 1000}k_{args.d}_s1.npy", args.n, args.d, 1.0
    )
    warm(path)
    runs = {"numpy's kernel": (_AS_SHIPPED, False), "faiss's own": (_AS_BEFORE, True)}
    seen: dict[str, list[tuple[float, dict]]] = {name: [] for name in runs}
    for _ in range(args.reps):
        for name, (program, _before) in runs.items():
            seen[name].append(audit(program, path, args.spec))
    print(
        f"## faiss's BLAS kernel: `--index {args.spec}` on {args.n // 1000}k × {args.d}, "
        "log-normal norms\n"
    )
    print(f"```bash\npython benchmarks/bench_faiss_kernel.py --n {args.n} --d {args.d} ", end="")
    print(f"--spec {args.spec} --reps {args.reps}\n```\n")
    for name, (_program, before) in runs.items():
        print(f"- {name}: {kernels(before)}")
    print(
        "\n| run | wall (s), each run | median (s) | index train / add / search (s), "
        "first run | EA701 recall@10 |"
    )
    print("|---|---|---|---|---|")
    medians = {}
    for name, results in seen.items():
        walls = [seconds for seconds, _ in results]
        medians[name] = statistics.median(walls)
        timings = results[0][1]["timings"]
        stages = " / ".join(
            f"{timings.get(f'index_{stage}_seconds', float('nan')):.1f}"
            for stage in ("train", "add", "search")
        )
        recall = next(c for c in results[0][1]["checks"] if c["code"] == "EA701")["value"]
        print(
            f"| {name} | {', '.join(f'{w:.1f}' for w in walls)} | {medians[name]:.1f} | "
            f"{stages} | {recall:.3f} |"
        )
    ratio = medians["faiss's own"] / medians["numpy's kernel"]
    print(f"\nfaiss's own kernel / numpy's: {ratio:.2f}× the wall time.\n")
    print(f"Machine: {machine()}.")


if __name__ == "__main__":
    main()
