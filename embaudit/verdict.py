"""The verdict: trustworthy, caution or untrustworthy, with the checks that drove it.

Each check states the level its finding raises the verdict to, given the declared objective
(docs/science.md); the verdict is the highest of them. Reasons name the driving checks; the
recommendations gather the concrete advice of every check that found something, one per action
(the most specific advice for it).
"""

from __future__ import annotations

from collections.abc import Sequence

from embaudit.model import Action, Advice, CheckResult, Level, Status, TrainedWith, Verdict

#: Checks that look at the geometry (pairs, spectrum, neighbours): without any of them, nothing
#: was measured about cosine itself.
GEOMETRY_PREFIXES = ("EA2", "EA3", "EA4", "EA5")


def decide(checks: Sequence[CheckResult], trained_with: TrainedWith) -> Verdict:
    ranked = sorted(
        ((check.impact, check) for check in checks if check.impact is not None),
        key=lambda pair: (-pair[0].rank, pair[1].code),
    )
    drivers = [check for _, check in ranked]
    level = ranked[0][0] if ranked else Level.TRUSTWORTHY
    reasons = [f"{check.code} {check.name}: {check.message}" for check in drivers]
    geometry = [check for check in checks if check.code.startswith(GEOMETRY_PREFIXES)]
    if not geometry:
        # The selection left out every check of cosine itself: nothing to call trustworthy.
        level = max(level, Level.CAUTION, key=lambda lvl: lvl.rank)
        reasons.append(
            "nothing about cosine was assessed: the selection runs no geometry or neighbour "
            "check (EA2xx-EA5xx)"
        )
    elif all(check.status == Status.SKIP for check in geometry):
        # Too few usable rows to measure anything about cosine: do not call that trustworthy.
        level = max(level, Level.CAUTION, key=lambda lvl: lvl.rank)
        reasons.append(
            "too few finite, non-zero rows to measure the geometry: every cosine check skipped"
        )
    if not reasons:
        objective = "" if trained_with == TrainedWith.UNKNOWN else f" ({trained_with}-trained)"
        reasons = [f"no check found a problem with cosine similarity on this data{objective}"]
    elif trained_with == TrainedWith.UNKNOWN and level == Level.CAUTION:
        reasons.append(
            f"declaring the training objective (--trained-with {TrainedWith.declarable()}) would "
            "settle whether these findings matter"
        )
    ordered = [*drivers, *(c for c in checks if c.impact is None)]
    given = [c.recommendation for c in ordered if c.recommendation and c.status != Status.PASS]
    return Verdict(level, reasons, recommendations(given), trained_with != TrainedWith.UNKNOWN)


def recommendations(given: Sequence[Advice]) -> list[str]:
    """One recommendation per action: the most specific advice first (at equal specificity, the
    first given), each kept when it asks for an action no kept advice asks for; the kept advice
    in the order of the first advice given for each of its actions."""
    first_asked: dict[Action, int] = {}
    for position, advice in enumerate(given):
        for action in advice.actions:
            first_asked.setdefault(action, position)
    kept: list[Advice] = []
    covered: set[Action] = set()
    for advice in sorted(given, key=lambda advice: -advice.specificity):
        if not set(advice.actions) <= covered:
            kept.append(advice)
            covered |= set(advice.actions)
    kept.sort(key=lambda advice: min(first_asked[action] for action in advice.actions))
    return list(dict.fromkeys(advice.text for advice in kept))
