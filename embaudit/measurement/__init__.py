"""Everything the checks read, measured in one pass over the source plus work on small samples.

    source ──┬── statistics (PartStats per fragment) ─────┐
             ├── kNN of the query sample (NeighborSearch) ├──> Measurements ──> checks
             └── geometry sample (collected in the pass) ─┘

- :mod:`.sampling`: the sample sizes, and the corpus rows the gauge queries search;
- :mod:`.gauges`: the diagonal gauges searched (random, canonical and its jitter, truncation);
- :mod:`.sample`: the geometry of the sample collected in the pass, and its isotropic reference;
- :mod:`.graphs`: the sample's cosine kNN graphs (hubness, islands) and their averages;
- :mod:`.neighbors`: what the checks read of the searches (overlaps, each query's nearest row);
- :mod:`.steps`: :func:`~.steps.measure`, the sequence of those steps.

Random choices each have their own stream (:mod:`embaudit.random_streams`), so changing one
sample size never changes the others. The package imports nothing itself: the options import
:mod:`.sampling` without the measuring code above it.
"""
