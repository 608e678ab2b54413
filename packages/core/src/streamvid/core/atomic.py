"""`atomic_write`: a file appears complete or not at all (temporary name in the same folder, then a rename)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "file_mode"]


def file_mode() -> int:
    """The mode a plain new file gets under the current umask (0666 less the umask; 0644 under umask 022).

    Writers that create files through a temporary name (`mkstemp`, safetensors) get 0600; the files that
    replace the outputs are given this mode instead, like their siblings."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on failure removed.

    The temporary file (``.<name>.<random>.tmp<suffix>``, created empty) is in ``path``'s folder, so the rename
    (`os.replace`) is atomic: readers see the old file or the complete new one. It keeps ``path``'s extension
    (ffmpeg and matplotlib choose the format from it) and gets ordinary permissions (0666 less the umask) before
    the rename. Parent folders are created.

        with atomic_write(out / "scores.csv") as tmp:
            table.to_csv(tmp, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
