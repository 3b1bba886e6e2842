"""What the one-liners and prompts say: every declarable objective offered where a declaration
is asked for, the outcome that happened, numbers printed with the digits that tell the side of
their threshold, and compare-knn's words."""

from __future__ import annotations

import re

from embaudit.model import TrainedWith

DECLARABLE = {objective.value for objective in TrainedWith} - {TrainedWith.UNKNOWN.value}


def _offered(text: str) -> list[set[str]]:
    """The objectives each '--trained-with a|b|c' of ``text`` offers."""
    return [set(found.split("|")) for found in re.findall(r"--trained-with ([\w|-]+)", text)]


def test_every_prompt_to_declare_the_objective_offers_every_declarable_one(cli, fixtures):
    report = cli("check", fixtures / "unnormalized.npy", "-f", "json").json()
    verdict = report["verdict"]
    said = verdict["reasons"] + verdict["recommendations"]
    prompts = [line for line in said if "--trained-with" in line]
    assert len(prompts) == 2  # the reason that a declaration settles it, and the advice
    assert all(_offered(line) == [DECLARABLE] for line in prompts)
    refused = cli("check", fixtures / "unnormalized.npy", "--require-objective")
    assert refused.code == 2
    assert _offered(refused.stderr) == [DECLARABLE]
    assert "dot-regularized" in DECLARABLE
