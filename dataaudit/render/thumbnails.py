"""Small base64 thumbnails of image files for the page; unreadable files are counted, never fatal.

Each thumbnail is a JPEG of at most MAX_SIDE pixels a side and MAX_BYTES bytes; the whole page
spends at most PAGE_BUDGET_BYTES on them, after which items show a placeholder (counted apart
from unreadable files), so a page of many large tables still opens quickly. Only regular files
of at most MAX_USER_FILE_BYTES are opened: a FIFO or /dev/zero counts as unreadable, never hangs.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

from dataaudit.files import open_regular

MAX_SIDE = 64
MAX_BYTES = 8_000
PAGE_BUDGET_BYTES = 2_000_000
MAX_PIXELS = 60_000_000  # larger images are not decoded (decompression bombs, huge scans)


class ThumbnailCache:
    """Thumbnails by path, each file read once; remembers which paths failed and why."""

    def __init__(self, max_side: int = MAX_SIDE, budget_bytes: int = PAGE_BUDGET_BYTES):
        self.max_side = max_side
        self.budget_bytes = budget_bytes
        self.spent_bytes = 0
        self._uris: dict[str, str] = {}
        self.missing: set[str] = set()  # no such file
        self.unreadable: set[str] = set()  # exists but is not a readable image
        self.over_budget: set[str] = set()  # readable, left out to keep the page small

    def data_uri(self, path: str) -> str:
        """A data: URI of a JPEG thumbnail, or "" when the file is missing, unreadable or over budget."""
        path = str(path)
        if path in self._uris:
            return self._uris[path]
        uri = ""
        if self.spent_bytes >= self.budget_bytes:
            self.over_budget.add(path)
        else:
            try:
                uri = "data:image/jpeg;base64," + base64.b64encode(
                    thumbnail_jpeg(path, self.max_side)
                ).decode("ascii")
                self.spent_bytes += len(uri)
            except FileNotFoundError:
                self.missing.add(path)
            except Exception:  # not an image, truncated, permission denied: placeholder, counted
                self.unreadable.add(path)
        self._uris[path] = uri
        return uri

    def problem(self, path: str) -> str:
        """Why a path has no thumbnail ("" when it has one or was never asked for)."""
        path = str(path)
        if path in self.missing:
            return "missing file"
        if path in self.unreadable:
            return "unreadable image"
        if path in self.over_budget:
            return "left out: page thumbnail budget reached"
        return ""


def thumbnail_jpeg(path: str | Path, max_side: int = MAX_SIDE) -> bytes:
    """The image at `path` shrunk to fit max_side x max_side, as JPEG bytes of at most MAX_BYTES."""
    from PIL import Image

    with open_regular(Path(path)) as handle, warnings.catch_warnings():
        # A thumbnail is best effort: PIL's doubts (odd palettes, EXIF) do not reach the terminal,
        # and its decompression-bomb warning at open ends here (such images exceed MAX_PIXELS).
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(handle)
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"{path}: {image.width}x{image.height} is too large to thumbnail")
        image.draft("RGB", (max_side, max_side))  # JPEG decodes at reduced scale: fast on photos
        image = image.convert("RGB")
        image.thumbnail((max_side, max_side))
        data = b""
        for quality in (75, 55, 35):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality)
            data = buffer.getvalue()
            if len(data) <= MAX_BYTES:
                return data
    raise ValueError(f"{path}: thumbnail exceeds {MAX_BYTES} bytes")
