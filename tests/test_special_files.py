"""Paths in the user's table that are not regular files: counted as unreadable, never a hang."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pytest

from dataaudit.files import NotARegularFile, open_regular
from dataaudit.neighbors import hash_files
from dataaudit.render.thumbnails import ThumbnailCache

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")


def _within(seconds: float, fn, *args):
    """fn(*args) in a thread; fails the test instead of hanging when it does not return."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} did not return within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def special_paths(tmp_path):
    from PIL import Image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: 300 MiB on paper, nothing on disk
        f.truncate(300 << 20)
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 10), (10, 200, 30)).save(good)
    return {
        "fifo": str(fifo),
        "dev_zero": "/dev/zero",
        "folder": str(folder),
        "huge": str(huge),
        "good": str(good),
        "missing": str(tmp_path / "nope.png"),
    }


def test_open_regular_refuses_fifo_device_folder_and_huge_file(special_paths):
    for kind in ("fifo", "dev_zero", "folder", "huge"):
        with pytest.raises(NotARegularFile):
            _within(5, open_regular, special_paths[kind])
    with pytest.raises(FileNotFoundError):
        open_regular(special_paths["missing"])
    with open_regular(special_paths["good"]) as f:
        assert f.read(4) == b"\x89PNG"


def test_thumbnails_count_special_files_as_unreadable(special_paths):
    cache = ThumbnailCache()
    uris = {kind: _within(10, cache.data_uri, path) for kind, path in special_paths.items()}
    assert uris["good"].startswith("data:image/jpeg;base64,")
    for kind in ("fifo", "dev_zero", "folder", "huge"):
        assert uris[kind] == "" and cache.problem(special_paths[kind]) == "unreadable image", kind
    assert cache.problem(special_paths["missing"]) == "missing file"


def test_decompression_bomb_is_unreadable_without_a_warning(tmp_path):
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 8_000)).save(bomb)  # 96 M pixels: over PIL's warning limit
    cache = ThumbnailCache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.data_uri(str(bomb)) == ""
    assert cache.problem(str(bomb)) == "unreadable image"


def test_file_hashes_skip_special_files(special_paths):
    paths = np.array(list(special_paths.values()), dtype=object)
    hashes = _within(10, hash_files, paths)
    by_kind = dict(zip(special_paths, hashes))
    assert by_kind["good"] != 0
    assert all(by_kind[k] == 0 for k in ("fifo", "dev_zero", "folder", "huge", "missing"))
