"""Output folders and atomic writes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from dsasim import files
from dsasim.errors import OutputError


def _raise_permission_error(*args: object, **kwargs: object) -> None:
    raise PermissionError(13, "Permission denied")


def test_output_folder_probe_rejects_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # os.access is True for root even where files cannot be made, so the check must try a real file.
    monkeypatch.setattr(tempfile, "TemporaryFile", _raise_permission_error)

    with pytest.raises(OutputError, match="is not writable"):
        files.prepare_output_folder(tmp_path / "out", ("a.csv",))


def test_output_folder_probe_before_creating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "TemporaryFile", _raise_permission_error)

    with pytest.raises(OutputError, match="cannot be created under"):
        files.prepare_output_folder(tmp_path / "new" / "out", ("a.csv",), create=False)
    assert not (tmp_path / "new").exists()


def test_output_folder_probe_leaves_no_file(tmp_path: Path) -> None:
    folder = files.prepare_output_folder(tmp_path / "out", ("a.csv",))

    assert list(folder.iterdir()) == []
