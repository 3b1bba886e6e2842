"""Files the tool writes (``--output``, ``--rows-out``, the GitHub Action's report): written so
that a reader never sees half of one.

A regular file (or a symlink to one) is replaced atomically through a temporary file in its
directory, with the permissions it had (a new file: the user's umask, as ``open`` would give
it, not the 0600 of a temporary file); a device or FIFO (``/dev/stdout``) is written in place.
Any OS error is a usage error naming the option and the path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from embaudit.errors import UsageError


def write_atomically(path: Path, write: Callable[[Path], None], option: str) -> None:
    """Have ``write`` write the file's whole content to the path it is given, then put it at
    ``path`` (see the module). ``option`` (``--output``) names the file in errors."""
    target = path.resolve() if path.is_symlink() else path
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    try:
        if target.exists() and not target.is_file():
            write(target)
            return
        mode = target.stat().st_mode & 0o777 if target.exists() else _default_mode()
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", delete=False
        ) as handle:
            temporary = Path(handle.name)
        try:
            write(temporary)
            temporary.chmod(mode)
            temporary.replace(target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write ({exc.strerror or exc})") from None


def write_text(path: Path, text: str, option: str) -> None:
    """:func:`write_atomically` of ``text`` in UTF-8."""

    def write(where: Path) -> None:
        with where.open("w", encoding="utf-8") as stream:
            stream.write(text)

    write_atomically(path, write, option)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
