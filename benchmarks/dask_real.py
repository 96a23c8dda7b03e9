"""The Dask engine on the real sets: the same report as in process, analysis by analysis.

Each set of ../shared/data/real/ (roman-numerals: images with MobileNet embeddings, exact
duplicates leaking train -> val; sms-spam: texts with sentence embeddings and duplicate
messages) is audited in process from its table file, and on a LocalCluster of 2 worker processes
from the same table written as 4 Parquet part files (in a temporary folder: nothing of the data
is kept). Every analysis with an engine form runs; the agreement is distributed.agreement's.

    python benchmarks/dask_real.py [--data ../shared/data/real]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
# This folder holds a script named distributed.py: dask's package must win the import.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE.resolve()]
from distributed import Client, LocalCluster  # noqa: E402

_spec = importlib.util.spec_from_file_location("distributed_benchmark", HERE / "distributed.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SETS = {"roman-numerals": None, "sms-spam": "text"}
HEADLINES = (
    ("label_errors", "n_label_errors"),
    ("duplicates", "n_duplicate_groups"),
    ("duplicates", "n_leaking_items"),
    ("outliers", "n_outliers"),
    ("slices", "n_failure_slices"),
)


def main() -> None:
    import dataaudit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "real"))
    args = parser.parse_args()
    analyses = bench.ported(True)
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0"))
    rows = []
    for name, text_col in SETS.items():
        folder = Path(args.data) / name
        table = pd.read_parquet(folder / "table.parquet")
        classes = [c for c in (folder / "classes.txt").read_text().splitlines() if c]
        options = {"classes": classes, "analyses": analyses}
        if text_col:
            options["text_col"] = text_col
        probs, emb = str(folder / "probs.npy"), str(folder / "embeddings.npy")
        with tempfile.TemporaryDirectory() as tmp:
            parts = Path(tmp) / "table"
            parts.mkdir()
            for i, chunk in enumerate(np.array_split(np.arange(len(table)), 4)):
                table.iloc[chunk].to_parquet(parts / f"part-{i}.parquet", index=False)
            clock = time.perf_counter()
            here = dataaudit.audit(str(folder / "table.parquet"), probs, emb, **options)
            here_s = time.perf_counter() - clock
            clock = time.perf_counter()
            there = dataaudit.audit(str(parts), probs, emb, engine="dask", client=client, **options)
            there_s = time.perf_counter() - clock
        verdict = bench.agreement(here, there, analyses)
        for analysis, v in verdict.items():
            print(f"{name:15s} {analysis:15s} {v}", file=sys.stderr)
        bad = {a: v for a, v in verdict.items() if not v.startswith(("same", "skip"))}
        heads = []
        for analysis, key in HEADLINES:
            if analysis in here.results and key in here[analysis].summary:
                a, b = here[analysis].summary[key], there[analysis].summary.get(key)
                heads.append(f"{key} {a}" + ("" if a == b else f" / {b}"))
        rows.append(
            {
                "set": f"{name} ({len(table):,} rows)",
                "in process s": f"{here_s:.1f}",
                "dask s": f"{there_s:.1f}",
                "headlines (in process / dask where they differ)": ", ".join(heads),
                "agreement": "every analysis"
                if not bad
                else "; ".join(f"{a} {v}" for a, v in bad.items()),
            }
        )
    client.close()
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row[h] for h in header) + " |")


if __name__ == "__main__":
    main()
