"""Errors that reach the user as one line and exit code 2.

Everything the user can get wrong — a file, an option, a configuration — raises one of these with a
message that names the thing at fault. The CLI prints ``embaudit: error: <message>`` and exits 2;
anything else that escapes is a bug (exit 3).
"""

from __future__ import annotations

from os import PathLike


class EmbauditError(Exception):
    """Base class of the errors the user can act on."""


class InputError(EmbauditError):
    """The input file (or array) cannot be read as embeddings.

    ``where`` names the file, optionally with a column, row or row group, and leads the message.
    """

    def __init__(self, where: str | PathLike[str] | None, problem: str) -> None:
        self.where = None if where is None else str(where)
        self.problem = problem
        super().__init__(problem if self.where is None else f"{self.where}: {problem}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str | None, str]]:
        # Errors cross process boundaries (an engine's workers): rebuild from both arguments.
        return (type(self), (self.where, self.problem))


class NoRows(InputError):
    """The input holds no rows (a 0 × d array, an empty file): an error for a file given
    alone; a directory of shards skips such a file and names it (an empty partition)."""


class UsageError(EmbauditError):
    """An option or argument has a value the tool cannot use."""


class ConfigError(EmbauditError):
    """A configuration file is unreadable or holds an unknown key or a bad value."""

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        return (type(self), (self.path, self.problem))


class IncompleteError(InputError):
    """Part of the data could not be read (a worker lost for good, say): no report is built.

    ``where`` names the file or dataset."""
