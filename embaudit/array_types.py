"""The array types the package passes around, named once: rows of float64 values (``Floats``)
and of int64 positions or counts (``Ints``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
