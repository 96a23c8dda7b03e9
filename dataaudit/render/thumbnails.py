"""Small base64 thumbnails of image files for the page; unreadable files are counted, never fatal."""

from __future__ import annotations

import base64
import io
from pathlib import Path

MAX_SIDE = 96
MAX_BYTES = 12_000


class ThumbnailCache:
    def __init__(self, max_side: int = MAX_SIDE):
        self.max_side = max_side
        self._uris: dict[str, str] = {}
        self.unreadable: set[str] = set()

    def data_uri(self, path: str) -> str:
        """A data: URI of a JPEG thumbnail, or "" when the file is missing or not an image."""
        if path in self._uris:
            return self._uris[path]
        uri = ""
        try:
            from PIL import Image

            with Image.open(Path(path)) as image:
                image = image.convert("RGB")
                image.thumbnail((self.max_side, self.max_side))
                for quality in (80, 60, 40):
                    buffer = io.BytesIO()
                    image.save(buffer, format="JPEG", quality=quality)
                    if buffer.tell() <= MAX_BYTES:
                        break
            uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        except Exception:  # missing, unreadable, not an image: shown as a placeholder and counted
            self.unreadable.add(path)
        self._uris[path] = uri
        return uri
