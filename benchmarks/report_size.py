"""Size of report.html at 10k, 100k and 1M rows, and what the bytes are spent on.

Inputs come from benchmarks/synth.py (planted flips, duplicates, a bad slice, OOD items), plus a
text column (an ~80-character caption per item) and an image-path column cycling over a pool of
distinct small PNG files, the worst case for the page: every item the page shows has a snippet
and a thumbnail. The target is < 10 MB at 1M rows.

    python benchmarks/report_size.py [--sizes 10000,100000,1000000] [--dim 32]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import synth  # noqa: E402

import dataaudit  # noqa: E402
from dataaudit.render.html import render_html  # noqa: E402

IMAGE_POOL = 4000


def write_image_pool(folder: Path, n: int) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:05d}.png"
        noise = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path)
        paths.append(str(path))
    return np.array(paths, dtype=object)


def breakdown(html: str) -> dict[str, int]:
    """Bytes by kind: plotly.js, figure JSON, thumbnails, the rest (markup, tables, text)."""
    total = len(html.encode("utf-8"))
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    plotly = max((len(s.encode()) for s in scripts), default=0)
    figures = sum(
        len(s.encode())
        for s in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S)
    )
    thumbs = sum(len(s) for s in re.findall(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", html))
    return {
        "total": total,
        "plotly": plotly,
        "figures": figures,
        "thumbnails": thumbs,
        "rest": total - plotly - figures - thumbs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=32, help="embedding dimensions")
    args = parser.parse_args()
    mb = 1e6
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_image_pool(Path(tmp), IMAGE_POOL)
        for n in (int(s) for s in args.sizes.split(",")):
            table, probs, embeddings, _ = synth.make(n, k=10, d=args.dim, seed=0)
            table["caption"] = [
                f"caption of item {i}: a photo taken at {s} with a few words of description"
                for i, s in zip(range(n), table["site"])
            ]
            table["image"] = pool[np.arange(n) % IMAGE_POOL]
            start = time.perf_counter()
            report = dataaudit.audit(
                table, probs, embeddings, text_col="caption", image_col="image"
            )
            audited = time.perf_counter() - start
            start = time.perf_counter()
            html = render_html(report)
            rendered = time.perf_counter() - start
            size = breakdown(html)
            n_tables = html.count('<table class="data">')
            n_charts = html.count('type="application/json"')
            rows.append(
                f"| {n:,} | {size['total'] / mb:.2f} | {size['plotly'] / mb:.2f} "
                f"| {size['figures'] / mb:.2f} | {size['thumbnails'] / mb:.2f} "
                f"| {size['rest'] / mb:.2f} | {n_tables} | {n_charts} "
                f"| {audited:.0f} | {rendered:.1f} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"html_max_rows = {dataaudit.AuditConfig().html_max_rows}; embeddings {args.dim}-d; "
        f"text and image columns on every row ({IMAGE_POOL:,} distinct image files).\n"
    )
    print(
        "| rows | report.html MB | plotly.js MB | figures MB | thumbnails MB | tables and text MB "
        "| tables | charts | audit s | render s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
