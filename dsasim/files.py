"""Atomic file writes shared by every layer: a reader never sees a half-written output."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dsasim.errors import OutputError

if TYPE_CHECKING:
    import pandas as pd

# Permission bits for a new file before the umask, as open() would use.
NEW_FILE_MODE = 0o666


def prepare_output_folder(folder: Path, file_names: Sequence[str], create: bool = True) -> Path:
    """Check that every output file in `folder` can be written, and create the folder unless `create` is False.

    Raises OutputError before any output is written, so a bad path leaves nothing half-done. Commands that
    can still fail after this check pass ``create=False``, so a failure leaves no empty folder behind.
    """
    folder = Path(folder)
    try:
        return _check_output_folder(folder, file_names, create)
    except OSError as error:  # a name too long, a path through a file, and the like
        raise OutputError(f"output folder '{folder}' cannot be used ({error.strerror}): pass another --out path") from error


def _check_output_folder(folder: Path, file_names: Sequence[str], create: bool) -> Path:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder '{folder}' is an existing file: pass a folder path to --out")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"output folder '{folder}' could not be created ({error.strerror}): pass a writable --out folder") from error
        if not _can_create_file_in(folder):
            raise OutputError(f"output folder '{folder}' is not writable: pass a writable --out folder")
    else:
        existing = folder
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not _can_create_file_in(existing):
            raise OutputError(f"output folder '{folder}' cannot be created under '{existing}': pass a writable --out folder")
    for name in file_names:
        target = folder / name
        if target.is_dir():
            raise OutputError(f"output file '{target}' is an existing folder: remove it or pass another --out folder")
    return folder


def _can_create_file_in(folder: Path) -> bool:
    """Try to create and remove a file in `folder`.

    A real attempt, because os.access returns True for root even on read-only or virtual file systems such as /proc.
    """
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    except OSError as error:
        raise OutputError(f"'{path}' could not be written ({error.strerror}): pass a writable output path") from error
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, NEW_FILE_MODE & ~_umask())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"'{path}' could not be written ({error.strerror}): pass a writable output path") from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomically(path: Path, text: str) -> Path:
    def write(temporary: Path) -> None:
        temporary.write_text(text, encoding="utf-8")

    return write_atomically(path, write)


def write_csv_atomically(path: Path, frame: pd.DataFrame) -> Path:
    """Write a pandas DataFrame as CSV without its index."""
    def write(temporary: Path) -> None:
        frame.to_csv(temporary, index=False)

    return write_atomically(path, write)
