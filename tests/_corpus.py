"""A generated corpus of hostile inputs, output folders and options for `dataaudit run`.

Each case builds its files in its own folder and says what must hold: which exit codes are
correct, which problem codes an exit 2 must name, which files must survive. The runner
(test_hostile_corpus.py) runs every case's CLI in a child process under a timeout and checks the
invariants common to all: no traceback, no hang, no unescaped payload, no formula cell.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from _small_inputs import CLASSES, small_frame

# In every user string: HTML/JS injection, a spreadsheet formula, a terminal escape sequence.
XSS = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror=alert(2)>'
FORMULA = "=cmd|' /C calc'!A0"
ANSI = "\x1b[31mRED\x1b]0;title\x07"
PAYLOADS = (XSS, IMG, FORMULA, ANSI)
RAW_HTML_PAYLOADS = (XSS, "<img src=x onerror")  # ANSI is harmless in a page, not on stderr


@dataclass
class Case:
    name: str
    argv: list[str]  # after `dataaudit`
    exits: tuple[int, ...] = (0, 1)
    codes: tuple[str, ...] = ()  # problem codes an exit 2 must name (any one of them)
    says: tuple[str, ...] = ()  # text stderr must hold
    keep: dict[str, bytes] = field(default_factory=dict)  # path -> bytes that must survive
    warnings: tuple[str, ...] = ()  # AuditWarning codes summary.json must list
    out: Path | None = None
    before: Callable[[], None] | None = None  # a step run before the child (e.g. a FIFO)
    signal_after: str | None = None  # send SIGTERM once stderr shows this line
    xfail: str = ""  # why this case fails today, naming the area that owns it


def _write(folder: Path, table: pd.DataFrame, probs, embeddings=None, name="examples.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"table": folder / name, "probs": folder / "probs.npy"}
    if name.endswith(".csv"):
        table.to_csv(paths["table"], index=False)
    else:
        table.to_parquet(paths["table"], index=False)
    np.save(paths["probs"], probs, allow_pickle=True)
    if embeddings is not None:
        paths["embeddings"] = folder / "embeddings.npy"
        np.save(paths["embeddings"], embeddings, allow_pickle=True)
    return {k: str(v) for k, v in paths.items()}


def _argv(paths: dict, out: Path, *extra: str) -> list[str]:
    argv = ["run", "--table", paths["table"], "--probs", paths["probs"], "--out", str(out)]
    if "embeddings" in paths:
        argv += ["--embeddings", paths["embeddings"]]
    return [*argv, "--classes", ",".join(CLASSES), "-q", *extra]


def build_cases(root: Path, earlier_run: Path) -> list[Case]:
    """Every case, its files under root/<case name>; earlier_run: a finished run's --out."""
    table, probs, emb = small_frame(120)
    cases: list[Case] = []

    def case(name: str, table=table, probs=probs, emb=emb, extra=(), **kw) -> Case:
        folder = root / name
        paths = _write(folder / "in", table, probs, emb)
        out = folder / "out"
        made = Case(name, _argv(paths, out, *extra), out=out, **kw)
        cases.append(made)
        return made

    # -- payloads in every user string ------------------------------------------------------------
    hostile = table.copy()
    n = len(hostile)
    hostile["id"] = [f"{PAYLOADS[i % 4]}#{i}" for i in range(n)]
    hostile["split"] = np.where(np.arange(n) % 3 == 0, "test" + XSS, "train")
    hostile[f"site{IMG}{ANSI}"] = [PAYLOADS[i % 4] + str(i % 2) for i in range(n)]
    hostile["caption"] = [f"caption {i} {PAYLOADS[(i + 1) % 4]}" for i in range(n)]
    hostile = hostile.drop(columns=["site"])
    payload_classes = tuple(f"{c}{p}" for c, p in zip(CLASSES, (XSS, FORMULA, ANSI)))
    hostile["label"] = hostile["label"].map(dict(zip(CLASSES, payload_classes))).fillna("")
    c = case("payloads_in_every_string", hostile, extra=("--text-col", "caption"))
    c.argv[c.argv.index("--classes") + 1] = ",".join(payload_classes)
    case("formula_and_dash_ids", table.assign(id=[f"{'-=+@'[i % 4]}{i}" for i in range(n)]))
    case(
        "huge_strings",
        table.assign(note=["x" * 200_000 if i == 0 else "short" for i in range(n)]),
        extra=("--text-col", "note"),
    )
    case("ids_and_labels_like_numbers", table.assign(id=[f"{i:03d}" for i in range(n)]))

    # -- wrong shapes and dtypes ------------------------------------------------------------------
    case("probs_1d", probs=probs[:, 0], exits=(2,), codes=("probs_shape",))
    case("probs_4d", probs=probs[None, None], exits=(2,), codes=("probs_shape",))
    case("probs_rows_short", probs=probs[:-7], exits=(2,), codes=("length_mismatch",))
    case("probs_not_summing", probs=probs * 3, exits=(2,), codes=("probs_not_normalized",))
    case("probs_text_dtype", probs=probs.astype(str), exits=(2,))
    case(
        "probs_pickled_objects", probs=probs.astype(object), exits=(2,), codes=("file_unreadable",)
    )
    case("probs_complex", probs=probs.astype(np.complex64), exits=(0, 1, 2))
    case(
        "embeddings_1e30",
        emb=emb * np.float32(1e30),
        warnings=("embeddings_rescaled",),
    )
    bad_emb = emb.copy()
    bad_emb[3, 1] = np.nan
    case("embeddings_nan", emb=bad_emb, exits=(2,), codes=("embeddings_not_finite",))
    case("embeddings_3d", emb=emb[None], exits=(2,), codes=("embeddings_shape",))
    case("embeddings_int8", emb=(emb * 10).astype(np.int8))

    # -- tables: encodings, garbage, missing pieces -----------------------------------------------
    folder = root / "table_latin1"
    paths = _write(folder / "in", table, probs, emb)
    text = Path(paths["table"]).read_text().replace("north", "nörth")
    Path(paths["table"]).write_bytes(text.encode("latin-1"))
    cases.append(
        Case("table_latin1", _argv(paths, folder / "out"), exits=(0, 1, 2), out=folder / "out")
    )
    folder = root / "table_garbage"
    paths = _write(folder / "in", table, probs, emb)
    Path(paths["table"]).write_bytes(np.random.default_rng(0).bytes(5000))
    cases.append(
        Case("table_garbage", _argv(paths, folder / "out"), exits=(2,), out=folder / "out")
    )
    folder = root / "table_empty_file"
    paths = _write(folder / "in", table, probs, emb)
    Path(paths["table"]).write_bytes(b"")
    cases.append(
        Case("table_empty_file", _argv(paths, folder / "out"), exits=(2,), out=folder / "out")
    )
    case("table_header_only", table.iloc[:0], exits=(2,))
    case("ids_duplicated", table.assign(id=["same"] * n), exits=(2,), codes=("duplicate_ids",))
    case("no_label_column", table.drop(columns=["label"]), exits=(2,), codes=("column_missing",))
    case("one_class_only", table.assign(label="cat"), exits=(2,), codes=("too_few_classes",))
    case(
        "payloads_in_an_error_message",
        table.assign(
            label=[(ANSI + XSS) if i % 9 == 0 else lab for i, lab in enumerate(table["label"])]
        ),
        exits=(2,),
        codes=("unknown_labels",),
    )

    # -- special files ----------------------------------------------------------------------------
    folder = root / "table_is_fifo"
    paths = _write(folder / "in", table, probs, emb)
    fifo_table = folder / "in" / "fifo.csv"
    os.mkfifo(fifo_table)
    argv = _argv({**paths, "table": str(fifo_table)}, folder / "out")
    cases.append(
        Case("table_is_fifo", argv, exits=(2,), codes=("file_unreadable",), out=folder / "out")
    )
    folder = root / "probs_is_dev_zero"
    paths = _write(folder / "in", table, probs, emb)
    argv = _argv({**paths, "probs": "/dev/zero"}, folder / "out")
    cases.append(Case("probs_is_dev_zero", argv, exits=(2,), out=folder / "out"))
    folder = root / "images_special_files"
    images = folder / "in" / "images"
    images.mkdir(parents=True)
    os.mkfifo(images / "fifo.png")
    (images / "dir.png").mkdir()
    with open(images / "huge.png", "wb") as f:
        f.truncate(300 << 20)  # sparse
    (images / "text.png").write_text(XSS)
    kinds = [
        str(images / "fifo.png"),
        "/dev/zero",
        str(images / "dir.png"),
        str(images / "huge.png"),
    ]
    kinds += [str(images / "text.png"), str(images / "missing.png")]
    with_images = table.assign(path=[kinds[i % len(kinds)] for i in range(n)])
    paths = _write(folder / "in", with_images, probs, emb)
    cases.append(
        Case(
            "images_special_files",
            _argv(paths, folder / "out", "--image-col", "path"),
            out=folder / "out",
        )
    )

    # -- output folders ---------------------------------------------------------------------------
    base = _write(root / "shared-in", table, probs, emb)
    regular = root / "a-regular-file"
    regular.write_bytes(b"keep")
    for name, out in (
        ("out_in_proc", Path("/proc/dataaudit-corpus")),
        ("out_under_a_file", regular / "out"),
        ("out_is_a_file", regular),
    ):
        cases.append(
            Case(name, _argv(base, out), exits=(2,), says=("--out",), keep={str(regular): b"keep"})
        )

    def copy_of_earlier_run(name: str) -> Path:
        import shutil

        out = root / name / "out"
        shutil.copytree(earlier_run, out)  # copy2 keeps the mtimes the manifest knows
        return out

    out = copy_of_earlier_run("force_keeps_other_files")
    (out / "audit" / "reviewer-notes.md").write_text("keep " + XSS)
    (out / "comparison.json").write_text('{"by": "another tool"}')
    (out / f"notes{ANSI}.txt").write_text("a file name with a terminal escape")
    kept = (out / "audit" / "reviewer-notes.md", out / "comparison.json", out / f"notes{ANSI}.txt")
    keep = {str(p): p.read_bytes() for p in kept}
    cases.append(
        Case(
            "force_keeps_other_files",
            [a for a in _argv(base, out, "--force") if a != "-q"],
            keep=keep,
            says=("left alone",),
            out=out,
        )
    )
    out = copy_of_earlier_run("stale_staging_left_by_a_kill")
    (out / ".dataaudit-staging-k1ll3d00").mkdir()
    (out / ".dataaudit-staging-k1ll3d00" / "report.html").write_text("half")
    (out / ".summary.json.abcd1234.tmp").write_text("{")
    cases.append(
        Case(
            "stale_staging_left_by_a_kill",
            [a for a in _argv(base, out, "--force") if a != "-q"],
            says=("interrupted",),
            out=out,
        )
    )
    out = copy_of_earlier_run("sigterm_during_the_analyses")
    keep = {str(p): p.read_bytes() for p in out.iterdir() if p.is_file()}
    argv = [a for a in _argv(base, out, "--force", "--seed", "3") if a != "-q"]
    cases.append(
        Case(
            "sigterm_during_the_analyses",
            argv,
            exits=(-15,),
            keep=keep,
            out=out,
            signal_after="✓ read and validate inputs",
        )
    )
    out = copy_of_earlier_run("edited_export_is_not_overwritten")
    (out / "relabel.csv").write_text((out / "relabel.csv").read_text() + "my review,,,\n")
    keep = {str(out / "relabel.csv"): (out / "relabel.csv").read_bytes()}
    cases.append(
        Case(
            "edited_export_is_not_overwritten",
            _argv(base, out, "--force"),
            exits=(2,),
            says=("changed since dataaudit wrote it",),
            keep=keep,
            out=out,
        )
    )

    # -- odd option values ------------------------------------------------------------------------
    odd = (
        ("seed_negative", ("--seed", "-1"), (2,), ("option_invalid",)),
        ("html_max_rows_zero", ("--html-max-rows", "0"), (2,), ("option_invalid",)),
        ("knn_approx_above_negative", ("--knn-approx-above", "-5"), (2,), ("option_invalid",)),
        (
            "fail_on_unknown_metric",
            ("--fail-on", "label_eror_rate>0.1"),
            (2,),
            ("fail_on_unknown_metric",),
        ),
        ("strategy_bald_one_model", ("--strategy", "bald"), (2,), ("strategy_needs_input",)),
        ("budget_huge", ("--budget", str(10**12)), (0, 1), ()),
        ("approx_search_always", ("--knn", "approx"), (0, 1), ()),
        ("html_max_rows_one", ("--html-max-rows", "1"), (0, 1), ()),
    )
    for name, extra, exits, codes in odd:
        cases.append(
            Case(
                name,
                _argv(base, root / name / "out", *extra),
                exits=exits,
                codes=codes,
                out=root / name / "out",
            )
        )
    return cases
