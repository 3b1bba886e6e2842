"""The verdict's recommendations on whole audits: one per action (the most specific kept), and
none that contradicts the declared objective."""

from __future__ import annotations

import numpy as np

from embaudit import audit
from embaudit.measurement.sampling import Sampling
from tests.exports import encoder_like, lognormal_norms

SAMPLING = Sampling(queries=200)


def _export(sigma: float, common: float = 0.5) -> np.ndarray:
    rows = encoder_like(4000, 32, seed=0, common=common)
    return lognormal_norms(rows, sigma=sigma, seed=0).astype(np.float32)


def _starting(recommendations: list[str], words: str) -> list[str]:
    return [line for line in recommendations if line.startswith(words)]


def test_an_inverted_file_below_its_recall_is_told_its_setting_once():
    report = audit(_export(0.6), trained_with="cosine", index="IVF64,Flat", sampling=SAMPLING)
    assert report.check("EA701").status != "pass"  # EA701 and EA702 both advise a setting
    said = report.verdict.recommendations
    assert len(_starting(said, "Search IVF64,Flat")) == 1, said
    assert len(said) == len(set(said))


def test_an_inner_product_index_of_a_cosine_model_is_told_to_normalize_once():
    report = audit(
        _export(0.6), trained_with="cosine", index="HNSW16", index_metric="ip", sampling=SAMPLING
    )
    assert report.check("EA402").status != "pass"  # the general advice to normalize
    said = report.verdict.recommendations
    normalize = _starting(said, "Normalize the vectors")
    assert normalize == [next(line for line in said if "with ip (or build HNSW16" in line)]


def test_a_dot_product_model_is_not_told_to_centre():
    report = audit(_export(0.6, common=2.0), trained_with="dot", sampling=SAMPLING)
    assert report.check("EA201").status != "pass" or report.check("EA202").status != "pass"
    said = report.verdict.recommendations
    assert not [line for line in said if "Centre" in line or "centre" in line], said
    assert said[0] == "Rank with the dot product the model was trained with, not cosine"
    # The same rows, declared cosine-trained, are told to centre.
    cosine = audit(_export(0.6, common=2.0), trained_with="cosine", sampling=SAMPLING)
    assert _starting(cosine.verdict.recommendations, "Centre the vectors")
