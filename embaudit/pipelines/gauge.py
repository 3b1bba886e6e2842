"""``embaudit gauge``: how far the cosine neighbours of two towers move under the diagonal
gauges that change no score, and how far the towers are from the balanced split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from embaudit.array_types import Floats
from embaudit.draw import draw_clean_rows
from embaudit.errors import InputError, UsageError
from embaudit.figures import beside
from embaudit.gauge import (
    Balance,
    GaugeSettings,
    Gram,
    SideResult,
    UsersMetric,
    audit_side,
    balance,
    prediction_change,
    tower_pass,
    users_metric,
)
from embaudit.model import CheckResult, Status
from embaudit.options import GaugeOptions, Side
from embaudit.pipelines import TOOL
from embaudit.random_streams import TowerStream, tower_generator
from embaudit.reports import GaugeReport
from embaudit.sources import EmbeddingSource


def run_gauge(items: EmbeddingSource, users: EmbeddingSource, options: GaugeOptions) -> GaugeReport:
    """The report of ``embaudit gauge`` on the opened towers."""
    started = time.perf_counter()
    if items.d != users.d:
        raise InputError(
            users.path,
            f"has dimension {users.d}, but {items.path} has {items.d}: the two towers of a "
            "dot-product model share d",
        )
    settings = GaugeSettings(
        k=options.k, seed=options.seed, max_condition=options.max_condition, sample=options.sample
    )
    rng = tower_generator(options.seed, TowerStream.ROWS)
    samples = {
        "items": draw_clean_rows(items, settings.sample, rng),
        "users": draw_clean_rows(users, settings.sample, rng),
    }
    towers = {name: rows for name, (_, rows, _) in samples.items()}
    _, pair_items, _ = draw_clean_rows(items, settings.pairs, rng)
    _, pair_users, _ = draw_clean_rows(users, settings.pairs, rng)
    sides, changes = _audit_sides(items, users, towers, (pair_items, pair_users), options, settings)
    checks = [
        _gauge_row(result, options.min_overlap, change)
        for result, change in zip(sides, changes, strict=True)
    ]
    balancing = time.perf_counter()
    towers_balance, user_gram = _whole_towers(items, users)
    checks.append(_balance_row(towers_balance))
    similarity = users_metric(towers["items"], user_gram, options.k)
    if options.write_items is not None:
        _write_items(items, user_gram, options.write_items)
    return GaugeReport(
        options=options,
        tool=TOOL,
        items=items.describe(),
        users=users.describe(),
        params=_params(options, settings),
        sides=sides,
        prediction_max_rel_change=max(changes),
        excluded_rows={name: dropped for name, (_, _, dropped) in samples.items()},
        balance=towers_balance,
        users_metric=similarity,
        recommendations=_recommendations(towers_balance, similarity, options, checks),
        checks=checks,
        timings={
            "balance_seconds": time.perf_counter() - balancing,
            "total_seconds": time.perf_counter() - started,
        },
        fail_on=options.fail_on,
    )


def _audit_sides(
    items: EmbeddingSource,
    users: EmbeddingSource,
    towers: dict[str, Floats],
    pairs: tuple[Floats, Floats],
    options: GaugeOptions,
    settings: GaugeSettings,
) -> tuple[list[SideResult], list[float]]:
    """The gauge sensitivity of each side asked for, and how much its worst gauge changes the
    predictions of the user-item ``pairs`` (it should change none)."""
    sides, changes = [], []
    for name in ("items", "users") if options.side == Side.BOTH else (options.side.value,):
        if len(towers[name]) < 2:
            source = items if name == "items" else users
            raise InputError(source.path, "needs at least two finite, non-zero rows")
        result, worst = audit_side(name, towers[name], settings)
        sides.append(result)
        # The worst gauge of the user side is D⁻¹ for the items.
        item_scale = worst if name == "items" else 1.0 / worst
        changes.append(prediction_change(pairs[0], pairs[1], item_scale))
    return sides, changes


def _params(options: GaugeOptions, settings: GaugeSettings) -> dict[str, Any]:
    """The report's parameters: the options and the sizes the settings derive from them."""
    return {
        "k": options.k,
        "seed": options.seed,
        "side": options.side.value,
        "max_condition": options.max_condition,
        "min_overlap": options.min_overlap,
        "sample": settings.sample,
        "draws": settings.draws,
        "budget": settings.budget,
        "pairs": settings.pairs,
        "fail_on": options.fail_on.value,
    }


def _whole_towers(items: EmbeddingSource, users: EmbeddingSource) -> tuple[Balance, Gram]:
    """Summed over every row of both towers, not a sample: one more streaming pass of each,
    for their column norms (the balance) and the users' Gram matrix (the users' metric)."""
    item_norms, _ = tower_pass((chunk.values for chunk in items.chunks()), items.d, items.dtype)
    user_norms, user_gram = tower_pass(
        (chunk.values for chunk in users.chunks()), users.d, users.dtype
    )
    return balance(item_norms, user_norms), user_gram


def _write_items(items: EmbeddingSource, user_gram: Gram, path: Path) -> None:
    """B·(AᵀA)^½ for every item row, streamed into a .npy file (float32; rows that are not
    finite stay so)."""
    root = user_gram.root()
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(items.n, items.d))
        for chunk in items.chunks():
            with np.errstate(invalid="ignore", over="ignore"):
                out[chunk.start : chunk.stop] = chunk.values.astype(np.float64) @ root
        out.flush()
        del out
    except OSError as exc:
        raise UsageError(f"--write-items {path}: cannot write ({exc.strerror or exc})") from None


def _recommendations(
    towers: Balance, similarity: UsersMetric, options: GaugeOptions, checks: list[CheckResult]
) -> list[str]:
    """Which similarity answers which question, for this pair of towers (``checks``: the gauge
    rows, whose failure says the scores alone leave cosine free)."""
    advice = [
        "User→item scores: the dot product u·i, which every split of the model gives alike",
    ]
    agreement = (
        ""
        if similarity.overlap_at_k is None
        else f"; plain cosine between items shares {similarity.overlap_at_k:.0%} of its "
        f"top-{similarity.k} neighbours"
    )
    where = (
        f" (written to {options.write_items})"
        if options.write_items is not None
        else " (--write-items writes them)"
    )
    advice.append(
        "Item→item similarity: cosine in the users' metric, i.e. of the rows B·(AᵀA)^½"
        f"{where}, the only item similarity every split of the model agrees on{agreement}. "
        "The plain dot product between items is not: (B·D)(B·D)ᵀ ≠ B·Bᵀ"
    )
    if towers.balanced:
        moved = [c for c in checks if c.name != "gauge-balance" and c.status == Status.FAIL]
        balanced = (
            f"The towers are balanced (condition "
            f"{beside(towers.condition or 1.0, towers.tolerance, '.4g')} ≤ {towers.tolerance:g})"
        )
        if moved:
            advice.append(
                f"{balanced}, as weight decay on both towers leaves them, but the scores alone "
                "do not fix the cosine neighbours (the gauge gate failed): plain cosine holds "
                "only if the model was trained with that penalty (--trained-with "
                "dot-regularized); otherwise use the users' metric above"
            )
        else:
            advice.append(
                f"{balanced}: if the model was trained with a penalty on each factor (weight "
                "decay on both towers, --trained-with dot-regularized), plain cosine is fixed "
                "up to a rotation and can be used too"
            )
    return advice


def _gauge_row(result: SideResult, min_overlap: float, change: float) -> CheckResult:
    value = result.worst_overlap_at_k
    failed = value < min_overlap
    message = (
        f"worst overlap@{result.k} {beside(value, min_overlap, '.3f')} of {result.side[:-1]} "
        f"cosine neighbours under a gauge of condition {result.worst_condition:.3g} that changes "
        f"no prediction (max relative change {change:.1e})"
    )
    if failed:
        message += (
            f": below {min_overlap:g}, cosine neighbours are not identified by the model's scores"
        )
    return CheckResult(
        code="",
        name=f"gauge-{result.side}",
        status=Status.FAIL if failed else Status.PASS,
        value=value,
        threshold=min_overlap,
        message=message,
        metrics={},
    )


def _balance_row(towers: Balance) -> CheckResult:
    """How far the towers are from the split weight decay on both of them selects: a warning when
    they are not there, since then nothing but the optimiser chose their split."""
    rows = f"over all {towers.rows['items']:,} item and {towers.rows['users']:,} user rows"
    dead = towers.dead
    both = f"; {len(dead['both'])} dimensions zero in both towers left out" if dead["both"] else ""
    if towers.condition is None and (dead["items"] or dead["users"]):
        one_sided = []
        for zero_in, other in (("users", "items"), ("items", "users")):
            if dead[zero_in]:
                shown = ", ".join(str(j) for j in dead[zero_in][:5])
                shown += ", …" if len(dead[zero_in]) > 5 else ""
                one_sided.append(
                    f"{len(dead[zero_in])} dimension(s) ({shown}) zero in the {zero_in} but not "
                    f"the {other}"
                )
        message = (
            f"{'; '.join(one_sided)}: no gauge balances them, and weight decay on both towers "
            "would have zeroed both, so the split is not the one per-factor L2 regularisation "
            "selects"
        )
        if towers.live_condition is not None:
            message += f" (the others: condition {towers.live_condition:.3g})"
    elif towers.condition is None:
        message = "no dimension is non-zero in both towers: there is no split to balance"
    elif towers.balanced:
        message = (
            f"balancing gauge of condition {beside(towers.condition, towers.tolerance, '.4g')} ≤ "
            f"{towers.tolerance:g} {rows}: "
            "every dimension has the same norm in both towers, the split weight decay on both "
            "towers (Steck et al. Eq. 2) selects; if it was so trained, the model fixes cosine "
            "up to a rotation"
        )
    else:
        message = (
            f"balancing gauge of condition {beside(towers.condition, towers.tolerance, '.3g')} > "
            f"{towers.tolerance:g} {rows}: "
            f"the ratio of user to item column norms varies {towers.condition**2:.3g}-fold "
            "across dimensions, so this is not the split weight decay on both towers selects: "
            "the split is arbitrary (a penalty on the product only, Steck et al. Eq. 1, or none) "
            "and cosine depends on it"
        )
    return CheckResult(
        code="",
        name="gauge-balance",
        status=Status.PASS if towers.balanced else Status.WARN,
        value=towers.condition,
        threshold=towers.tolerance,
        message=message + both,
        metrics={
            "live_condition": towers.live_condition,
            "log_scale_std": towers.log_scale_std,
            "dead_dimensions": {side: len(columns) for side, columns in dead.items()},
        },
    )
