"""Memory a worker of the pass uses again from one chunk, or one step, to the next."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


class Scratch:
    """Named arrays a worker takes again at about the same size on every chunk or step: a
    chunk's rows and unit rows, a step's products, a block's squares. Such an array is MiBs to
    tens of MiB: freed, glibc gives it back to the system (above its largest threshold for
    keeping freed memory, 32 MiB, or at the top of its heap), and the next one is mapped and
    faulted in page by page, zeroed by the kernel. An audit of 500,000 16-d rows spent 1.5-1.7
    s in the kernel before its products were kept (0.6-0.7 s after), and a 1M × 768 audit
    2.7-2.9 s before its chunks' rows and unit rows were (1.5-1.6 s after). Each name's
    memory is kept from one :meth:`take` to the next (grown when too small) until
    :meth:`clear`; what is taken under a name is valid until the next take of that name."""

    def __init__(self) -> None:
        self._memory: dict[str, npt.NDArray[Any]] = {}

    def take(self, name: str, dtype: npt.DTypeLike, *shape: int) -> npt.NDArray[Any]:
        """An uninitialised array of ``shape`` and ``dtype``, in the memory of the last one
        taken under ``name`` (grown when that is too small)."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        held = self._memory.get(name)
        if held is None or len(held) < size:
            self._memory.pop(name, None)  # the old memory goes before the new is taken
            held = self._memory[name] = np.empty(size, dtype=np.uint8)
        return held[:size].view(dtype).reshape(shape)

    def products(self, *shape: int) -> npt.NDArray[np.float32]:
        """The float32 products of a step (see :mod:`embaudit.knn.products`)."""
        products: npt.NDArray[np.float32] = self.take("products", np.float32, *shape)
        return products

    @property
    def nbytes(self) -> int:
        return sum(held.nbytes for held in self._memory.values())

    def clear(self) -> None:
        self._memory.clear()

    def __getstate__(self) -> dict[str, object]:
        return {"_memory": {}}  # a search sent to another process takes no memory along
