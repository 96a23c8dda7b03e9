"""A small audit whose every user-controlled string is an HTML/JavaScript injection payload.

Used by the HTML and browser tests: if any payload runs, it sets window.__pwned or calls alert().
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PAYLOADS = (
    "<script>window.__pwned=1;alert(1)</script>",
    '"><img src=x onerror="window.__pwned=2;alert(2)">',
    "</script><script>window.__pwned=3;alert(3)</script>",
    "'><svg onload=window.__pwned=4>",
)
CLASSES = tuple(f"c{i}{p}" for i, p in enumerate(PAYLOADS[:3]))
SPLITS = ("train", "test" + PAYLOADS[2])
META_COLUMN = "scanner" + PAYLOADS[1]
N_MISSING_IMAGES = 3
N_UNREADABLE_IMAGES = 2


def write_images(folder: Path, n: int, missing=(), unreadable=()) -> list[str]:
    """n image paths with payload file names: PNGs, except rows `missing` (never written) and
    `unreadable` (text files named .png)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        # File names may hold any character but "/" and NUL; quotes and angle brackets included.
        name = f'{i}"><img src=x onerror=alert({i})>.png'
        path = folder / name
        if i in missing:
            pass
        elif i in unreadable:
            path.write_text("not an image " + PAYLOADS[0])
        else:
            shade = (i * 37) % 255
            Image.new("RGB", (40, 30), (shade, 255 - shade, 120)).save(path)
        paths.append(str(path))
    return paths


def make_hostile_report(folder: Path, n: int = 90, seed: int = 0):
    """Audit of n items whose ids, labels, classes, splits, metadata, text and image paths are
    injection payloads. Labeled items are flipped so the label-error table has rows; the
    first flipped items have a missing or unreadable image, so the page must show placeholders."""
    import dataaudit

    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    true = rng.integers(0, k, size=n)
    given = true.copy()
    labeled = rng.random(n) > 0.15
    flips = rng.choice(np.flatnonzero(labeled), size=8, replace=False)
    given[flips] = (true[flips] + 1) % k
    missing = set(flips[:N_MISSING_IMAGES].tolist())
    unreadable = set(flips[N_MISSING_IMAGES : N_MISSING_IMAGES + N_UNREADABLE_IMAGES].tolist())
    probs = np.full((n, k), 0.05, dtype=np.float32)
    probs[np.arange(n), true] = 0.9
    probs /= probs.sum(axis=1, keepdims=True)
    embeddings = (np.eye(k)[true] + rng.normal(0, 0.1, size=(n, k))).astype(np.float32)
    embeddings = np.hstack([embeddings, rng.normal(0, 0.1, size=(n, 5)).astype(np.float32)])
    table = pd.DataFrame(
        {
            "id": [f"{PAYLOADS[i % len(PAYLOADS)]}#{i}" for i in range(n)],
            "label": [CLASSES[g] if lab else "" for g, lab in zip(given, labeled)],
            "split": [SPLITS[i % 2] for i in range(n)],
            META_COLUMN: [PAYLOADS[i % len(PAYLOADS)] + str(i % 2) for i in range(n)],
            "caption": [f"caption {i} " + PAYLOADS[(i + 1) % len(PAYLOADS)] for i in range(n)],
            "path": write_images(folder / "images", n, missing, unreadable),
        }
    )
    return dataaudit.audit(
        table,
        probs,
        embeddings,
        classes=CLASSES,
        text_col="caption",
        image_col="path",
        html_max_rows=50,
    )
