"""audit(): inputs -> validated dataset -> every applicable analysis -> AuditReport."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext, Progress
from dataaudit.dataset import AuditDataset
from dataaudit.engine.loop import peak_rss_mb, run_registry
from dataaudit.load import parse_classes
from dataaudit.options import check_options
from dataaudit.problems import AuditWarning, InputError, Problem, python_warnings_as
from dataaudit.report import AuditReport
from dataaudit.sanity import LabelCheck, check_labels
from dataaudit.validate import load_dataset

_COLUMN_ARGS = {
    "id_col": "id",
    "label_col": "label",
    "split_col": "split",
    "text_col": "text",
    "image_col": "image",
    "ignore_cols": "ignore",
}


def make_config(config: AuditConfig | None = None, **overrides: Any) -> AuditConfig:
    """A config from defaults (or `config`), with column roles (`label_col=...`) and fields overridden."""
    config = config or AuditConfig()
    columns = {_COLUMN_ARGS[k]: overrides.pop(k) for k in list(overrides) if k in _COLUMN_ARGS}
    if columns:
        overrides["columns"] = dataclasses.replace(config.columns, **columns)
    if "classes" in overrides:
        # Names, comma-separated text or a file; a path to a missing file is an InputError.
        overrides["classes"], problems = parse_classes(overrides["classes"])
        if problems:
            raise InputError(problems)
    if isinstance(overrides.get("unlabeled_values"), str):  # --unlabeled-values NA,-1
        overrides["unlabeled_values"] = overrides["unlabeled_values"].split(",")
    if "unlabeled_values" in overrides:
        values = (str(v).strip() for v in overrides["unlabeled_values"])
        overrides["unlabeled_values"] = tuple(v for v in values if v)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(AuditConfig)}
    if unknown:
        raise TypeError(f"unknown audit option(s): {', '.join(sorted(unknown))}")
    return config.replace(**overrides)


def audit(
    table,
    probs,
    embeddings=None,
    *,
    verdicts=None,
    config: AuditConfig | None = None,
    verbosity: int = 0,
    engine: str = "inprocess",
    client=None,
    analyses: tuple[str, ...] | None = None,
    parts_dir: str | None = None,
    **options: Any,
) -> AuditReport:
    """Audit a training run's data.

    Parameters
    ----------
    table : path to a CSV/Parquet file, or a DataFrame
        One row per example: id, label (empty = unlabeled), split, metadata columns.
    probs : path to .npy / Parquet / CSV, or an array
        Out-of-sample predicted probabilities, N x K or M x N x K (committee / MC-dropout).
    embeddings : path or array, optional
        N x d embeddings; analyses that need them are skipped (with the reason) when absent.
    verdicts : path to a verdict ledger (Parquet), optional
        Reviewers' verdicts from earlier runs (`dataaudit verdicts import`): items reviewed ok
        leave relabel.csv, confirmed errors stay on top, pending items leave the queue.
    config : AuditConfig, optional
    verbosity : 0 quiet, 1 progress, 2 verbose
    engine : "inprocess" (default) or "dask": the analyses run as map/reduce over the partitions
        of the inputs on a Dask cluster (dataaudit.engine); `table` may then be a folder or glob
        of Parquet files (any fsspec URL), `probs` / `embeddings` .npy or keyed Parquet.
    client : distributed.Client, optional
        The cluster for engine="dask" (default: the current client).
    analyses : names, optional
        Run only these analyses (the others are listed as skipped). The Dask engine refuses
        analyses it cannot run yet unless they are left out here.
    parts_dir : folder or URL, optional
        engine="dask": where workers write the full per-item tables as Parquet parts.
    **options : column roles (id_col, label_col, split_col, text_col, image_col) or any
        AuditConfig field, e.g. ``budget=200``.

    Returns
    -------
    AuditReport

    Examples
    --------
    >>> from dataaudit.demo import make_demo_inputs
    >>> inputs = make_demo_inputs(seed=0)
    >>> report = audit(inputs.table, inputs.probs, inputs.embeddings)
    >>> report.metrics()["n_label_errors"] > 0
    True
    """
    config = make_config(config, **options)
    check_options(config, probs, embeddings)  # before reading any data
    progress = Progress(verbosity)
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    selected = None if analyses is None else tuple(analyses)
    _check_selection(selected)
    if engine == "dask":
        from dataaudit.engine.dask_engine import audit_on_dask

        report = audit_on_dask(
            table,
            probs,
            embeddings,
            config,
            progress,
            client=client,
            analyses=selected,
            parts_dir=parts_dir,
            verdicts=None if verdicts is None else _read_verdicts(verdicts),
        )
    elif engine == "inprocess":
        caught: list[AuditWarning] = []
        with (
            progress.step("read and validate inputs"),
            python_warnings_as("reading the inputs", caught),
        ):
            data, label_check = load_checked(table, probs, embeddings, config)
            if verdicts is not None:
                data = dataclasses.replace(data, verdicts=_read_verdicts(verdicts))
        if caught:
            data = dataclasses.replace(data, warnings=(*data.warnings, *caught))
        ctx = AuditContext(config, progress)
        ctx.timings["load_and_validate"] = time.perf_counter() - clock
        ctx.peak_rss_mb["load_and_validate"] = peak_rss_mb()
        report = run_analyses(data, ctx, selected)
        report.run["label_check"] = label_check.to_dict()
    else:
        raise ValueError(f"engine must be 'inprocess' or 'dask', not {engine!r}")
    report.run.update(
        started_at=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - clock, 3),
    )
    return report


def _read_verdicts(path) -> Any:
    from dataaudit.problems import InputError, Problem
    from dataaudit.verdicts import VerdictError, latest, read_ledger

    if not Path(path).is_file():
        raise InputError(
            [
                Problem(
                    "file_missing",
                    "verdict ledger not found",
                    source=str(path),
                    fix="Give the ledger written by `dataaudit verdicts import --ledger`.",
                )
            ]
        )
    try:
        return latest(read_ledger(path))
    except VerdictError as exc:
        raise InputError(
            [Problem("verdicts_unreadable", p, source=str(path)) for p in exc.problems]
        ) from exc


def _check_selection(selected: tuple[str, ...] | None) -> None:
    from dataaudit import analyses as registry

    unknown = [name for name in selected or () if name not in registry.names()]
    if unknown:
        raise InputError(
            [
                Problem(
                    "unknown_analysis",
                    "no such analysis: " + ", ".join(unknown),
                    source="--analyses",
                    fix="Choose from " + ", ".join(registry.names()) + ".",
                )
            ]
        )


def load_checked(
    table, probs, embeddings=None, config: AuditConfig | None = None
) -> tuple[AuditDataset, LabelCheck]:
    """Read and validate the inputs, then the safety net; raises InputError on bad or misread input.

    Misread inputs (probability rows or class columns out of order) stop here, before any
    analysis; the safety net's milder doubts join the dataset's warnings.
    """
    config = config or AuditConfig()
    data = load_dataset(table, probs, embeddings, config)
    label_check, doubts = check_labels(data, config)
    return dataclasses.replace(data, warnings=(*data.warnings, *doubts)), label_check


def run_analyses(
    data: AuditDataset, ctx: AuditContext, selected: tuple[str, ...] | None = None
) -> AuditReport:
    """Run every registered analysis whose inputs exist (and is selected), in registry order."""
    from dataaudit import __version__

    results, skipped, failed, titles = run_registry(
        ctx,
        data.has,
        lambda analysis: analysis.run(data, ctx, ctx.config),
        selected,
        lambda analysis: analysis.skip_reason(data, ctx.config) if analysis.skip_reason else None,
    )
    return AuditReport(
        dataset=describe_dataset(data),
        items=data.items_frame(),
        results=results,
        config=ctx.config,
        run={
            "dataaudit_version": __version__,
            "inputs": [dataclasses.asdict(s) for s in data.sources],
            "timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
            "peak_rss_mb_after": dict(ctx.peak_rss_mb),
        },
        skipped=skipped,
        failed=failed,
        titles=titles,
        warnings=list(data.warnings),
    )


def describe_dataset(data: AuditDataset) -> dict[str, Any]:
    """Counts the overview shows: per split, labeled and unlabeled, and what inputs came."""
    splits = {}
    for split in sorted(set(data.splits.tolist())):
        in_split = data.splits == split
        splits[split] = {
            "n_items": int(in_split.sum()),
            "n_labeled": int((in_split & data.labeled).sum()),
        }
    class_counts = np.bincount(data.labels[data.labeled], minlength=data.k)
    return {
        "n_items": data.n,
        "n_labeled": int(data.labeled.sum()),
        "n_unlabeled": int((~data.labeled).sum()),
        # Why: "" = empty label cells, then each --unlabeled-values value that matched.
        "unlabeled_by_value": {v: n for v, n in data.unlabeled_by_value if n},
        "splits": splits,
        "classes": list(data.classes),
        "class_source": data.class_source,
        "labeled_per_class": {c: int(n) for c, n in zip(data.classes, class_counts)},
        "n_models": data.n_models,
        "embedding_dim": None if data.embeddings is None else int(data.embeddings.shape[1]),
        "metadata_columns": [str(c) for c in data.metadata.columns],
        "has_text": data.text is not None,
        "has_images": data.image_paths is not None,
    }
