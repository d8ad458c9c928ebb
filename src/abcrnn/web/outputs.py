"""The server's output folder: one subfolder of generated files per request."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

from abcrnn.web.schemas import FILE_NAME_PATTERN, OUTPUT_ID_PATTERN

MEDIA_TYPES = {".abc": "text/vnd.abc", ".mid": "audio/midi", ".wav": "audio/wav"}


class OutputStore:
    """Create request folders under `root` and find files in them safely.

    Only the newest `max_folders` request folders are kept. Making a new folder
    deletes older ones, so a long-running server does not fill the disk.
    """

    def __init__(self, root: Path, max_folders: int = 500) -> None:
        self.root = root
        self.max_folders = max_folders

    def new_folder(self) -> tuple[str, Path]:
        """Create an empty folder for one request; return its id and path."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._prune()
        folder_id = uuid.uuid4().hex
        folder = self.root / folder_id
        folder.mkdir()
        return folder_id, folder

    def url(self, folder_id: str, path: Path | None) -> str | None:
        """Return the download address of `path`, a file in folder `folder_id`."""
        if path is None or not re.fullmatch(FILE_NAME_PATTERN, path.name):
            return None
        return f"/api/files/{folder_id}/{path.name}"

    def find(self, folder_id: str, name: str) -> Path | None:
        """Return the file `name` of folder `folder_id`, or None if it is not there.

        Names must match the patterns the store itself writes, and the resolved path
        must stay inside the store's root.
        """
        if not re.fullmatch(OUTPUT_ID_PATTERN, folder_id):
            return None
        if not re.fullmatch(FILE_NAME_PATTERN, name):
            return None
        root = self.root.resolve()
        path = (root / folder_id / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def _prune(self) -> None:
        folders = [
            child
            for child in self.root.iterdir()
            if child.is_dir() and re.fullmatch(OUTPUT_ID_PATTERN, child.name)
        ]
        if len(folders) < self.max_folders:
            return
        folders.sort(key=lambda folder: folder.stat().st_mtime)
        for folder in folders[: len(folders) - self.max_folders + 1]:
            shutil.rmtree(folder, ignore_errors=True)
