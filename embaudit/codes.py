"""The stable check codes and their names: public API (CI configurations select, ignore and tune
them), never renumbered.

This table sits low in the package: the options validate a selection against it, the
configuration reads per-code settings by it, and :mod:`embaudit.checks` registers exactly one
check for each code (it refuses to import otherwise), without either importing the other.
"""

from __future__ import annotations

#: Every check code, with its kebab-case name, in code order. The hundreds are the families:
#: EA0xx data defects, EA1xx norms, EA2xx geometry, EA3xx gauges, EA4xx metrics, EA5xx
#: neighbour graphs, EA6xx drift against a baseline, EA7xx indexes.
CODES: dict[str, str] = {
    "EA001": "non-finite",
    "EA002": "zero-vectors",
    "EA003": "duplicates",
    "EA004": "dead-dimensions",
    "EA005": "near-duplicates",
    "EA101": "norm-spread",
    "EA201": "mean-cosine",
    "EA202": "common-direction",
    "EA203": "spectrum",
    "EA204": "rogue-dimensions",
    "EA205": "scale-spread",
    "EA206": "distance-concentration",
    "EA301": "gauge-sensitivity",
    "EA302": "canonical-gauge",
    "EA303": "truncation",
    "EA401": "cosine-vs-l2",
    "EA402": "cosine-vs-dot",
    "EA501": "hubness",
    "EA502": "graph-islands",
    "EA503": "isolated-rows",
    "EA504": "query-hubness",
    "EA601": "neighbour-stability",
    "EA602": "norm-shift",
    "EA603": "verdict-change",
    "EA701": "ann-recall",
    "EA702": "index-vs-objective",
    "EA705": "filtered-recall",
}

#: The family of each hundred: the module of :mod:`embaudit.checks` that holds its checks.
FAMILIES: dict[str, str] = {
    "EA0": "data defects",
    "EA1": "norms",
    "EA2": "geometry",
    "EA3": "gauges",
    "EA4": "metrics",
    "EA5": "neighbour graphs",
    "EA6": "drift",
    "EA7": "indexes",
}
