"""What the readers of several formats share: importing the optional library a format needs,
turning that library's errors into input errors that name the file, and picking the one 2-D
array of a file that holds several (``--key``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Self

from embaudit.errors import InputError


def optional_library(module: str, where: str, needs: str) -> Any:
    """The optional library ``module`` (an extra of embaudit); when it is not installed, an input
    error naming ``where`` that says what reading it ``needs`` (and how to install it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(where, needs) from None


def first_line(error: BaseException) -> str:
    """What an error says, its first line only; its type's name when it says nothing."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class ReadErrors:
    """A context around a library's reading calls (``with _reading(path): ...``) that turns the
    errors the library raises into input errors: :meth:`problem` tells them from other errors
    and names the file. An input error raised inside passes unchanged."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if error is None or isinstance(error, InputError):
            return
        problem = self.problem(error)
        if problem is not None:
            raise problem from None

    def problem(self, error: BaseException) -> InputError | None:
        """The input error ``error`` stands for, or None when it is not the library's."""
        raise NotImplementedError


def only_matrix(
    matrices: list[str], what: str, listing: str, describe: Callable[[str], str], where: str
) -> str:
    """The name of the one 2-D ``what`` (dataset, tensor) of ``matrices``, the candidates of a
    file whose contents are ``listing``; with none or several, an input error that lists them
    (several: pick one with --key)."""
    if len(matrices) == 1:
        return matrices[0]
    if not matrices:
        raise InputError(where, f"no 2-D {what}; the file holds: {listing}")
    names = ", ".join(describe(name) for name in matrices)
    raise InputError(
        where, f"the file holds {len(matrices)} 2-D {what}s ({names}); pick one with --key"
    )
