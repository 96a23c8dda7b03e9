"""The Dask engine: kernels over the partitions of the joined inputs on a distributed cluster.

`audit_on_dask` is `audit(..., engine="dask")`: it reads and validates the inputs on the cluster
(engine/inputs.py), runs every selected analysis that has an engine form (`run_on`) with a
`DaskEngine`, and builds the AuditReport from what came back: reductions and capped, ranked
tables. Analyses without an engine form are refused by name before any work starts
(`analysis_not_on_dask`), unless the run selects the others (`analyses=`), in which case the
report lists the rest as skipped, with the reason.

Each kernel runs where its partition lives; partials are combined in a binary tree of tasks, so
the driver receives one small value per pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dask
import numpy as np
import pandas as pd

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext, Progress
from dataaudit.engine import Chunk, concat
from dataaudit.engine.dask_graph import GraphPart, delayed_tree
from dataaudit.engine.inputs import (
    LABEL,
    META,
    PART,
    POS,
    Layout,
    PartitionedInputs,
    read_partitioned,
)
from dataaudit.problems import InputError, Problem

T = TypeVar("T")


def partition_chunk(part, layout: Layout, euclidean=None) -> Chunk:
    """One partition of the joined inputs as a Chunk (probabilities, embeddings read on use);
    after the kNN graph a partition is a dask_graph.GraphPart, the rows with their graph.
    `euclidean`: the partition's rows in the near-duplicate rule's Euclidean graph, once built."""
    graph = part if isinstance(part, GraphPart) else None
    frame = part if graph is None else graph.frame
    return Chunk(
        pos=frame[POS].to_numpy(dtype=np.int64),
        ids=frame["id"].to_numpy(dtype=object),
        labels=frame[LABEL].to_numpy(dtype=np.int64),
        splits=frame["split"].to_numpy(dtype=object),
        probs=lambda: frame[list(layout.probs)].to_numpy(dtype=np.float32),
        embeddings=(
            (lambda: frame[list(layout.embeddings)].to_numpy(dtype=np.float32))
            if layout.embeddings
            else None
        ),
        metadata=lambda: _metadata(frame, layout),
        columns=lambda role: table_column(frame, layout, role),
        graph=None if graph is None else graph.columns,
        member_probs=(
            (lambda: np.stack([frame[list(c)].to_numpy(dtype=np.float32) for c in layout.members]))
            if layout.members
            else None
        ),
        euclidean=euclidean,
    )


def _metadata(frame: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """The partition's metadata columns as pandas reads the table file in process: Dask turns
    text into its own string dtype (missing = NA); pandas' default one has missing = NaN."""
    columns = {META + name: name for name in layout.metadata}
    out = frame[list(columns)].rename(columns=columns).reset_index(drop=True)
    for name in out.columns:
        dtype = out[name].dtype
        if isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA:
            out[name] = out[name].astype(pd.StringDtype(dtype.storage, na_value=np.nan))
    return out


def table_column(frame: pd.DataFrame, layout: Layout, role: str) -> np.ndarray | None:
    """A table column (by role) for a partition's rows, read from their table files.

    Image paths are made absolute against the folder of the table file that names them (local
    files; URLs are left as given).
    """
    name = dict(layout.columns).get(role)
    if name is None:
        return None
    files = frame[PART].to_numpy()
    pos = frame[POS].to_numpy(dtype=np.int64)
    out = np.empty(len(frame), dtype=object)
    for index in np.unique(files):
        path, offset = layout.files[index]
        values = pd.read_parquet(path, columns=[name])[name].astype(object).to_numpy()
        rows = files == index
        picked = values[pos[rows] - offset]
        if role == "image" and "://" not in path:
            base = os.path.dirname(os.path.abspath(path))
            picked = np.array(
                [
                    os.path.normpath(os.path.join(base, p)) if isinstance(p, str) and p else ""
                    for p in picked
                ],
                dtype=object,
            )
        out[rows] = picked
    return out


def _apply(part, layout: Layout, kernel, params, euclidean=None):
    return kernel(partition_chunk(part, layout, euclidean), *params)


def _write(part, layout: Layout, kernel, params, path: str, euclidean=None) -> int:
    table = kernel(partition_chunk(part, layout, euclidean), *params)
    table.to_parquet(path, index=False)
    return len(table)


class DaskEngine:
    name = "dask"

    def __init__(
        self,
        inputs: PartitionedInputs,
        client,
        parts_dir: str | None = None,
        verdicts: pd.DataFrame | None = None,
    ):
        self.inputs = inputs
        self.verdicts = verdicts
        self.client = client
        self.parts_dir = parts_dir
        self.classes = inputs.classes
        self.has_embeddings = bool(inputs.layout.embeddings)
        self.embedding_dim = len(inputs.layout.embeddings)
        self.n_models = inputs.layout.n_models  # chunks carry member_probs when > 1
        # The engine owns the persisted partitions: `inputs` keeps only the facts, so when the
        # kNN graph replaces them the workers release the input copies (one copy, not two).
        self._meta = inputs.frame._meta
        self._parts = list(inputs.frame.to_delayed())
        inputs.frame = None
        self.graph_info = None
        self._euclidean_info = None
        self._euclidean: list | None = None  # per partition, aligned with self._parts

    @property
    def partitions(self) -> list:
        """The delayed partitions kernels run on: the input frame's, or GraphParts once the kNN
        graph is built (persisted on the workers)."""
        return self._parts

    def graph(self, ctx: AuditContext):
        """The run's kNN graph, built on the cluster once (engine/dask_graph.py)."""
        if self.graph_info is None:
            from dataaudit.engine.dask_graph import build_graph

            with ctx.progress.step("kNN graph on the cluster"):
                self.graph_info, self._parts = build_graph(self, ctx)
        return self.graph_info

    def euclidean_graph(self, ctx: AuditContext):
        """The near-duplicate rule's exact Euclidean graph (at most LOW_DIM dimensions), built
        on the cluster once; every chunk carries its rows' part of it from then on."""
        if self._euclidean_info is None:
            from dataaudit.engine.dask_graph import build_euclidean

            with ctx.progress.step("near-duplicate rule (Euclidean graph on the cluster)"):
                self._euclidean_info, self._euclidean = build_euclidean(self, ctx)
        return self._euclidean_info

    def _with_euclidean(self) -> list[tuple]:
        """(partition, its Euclidean graph or None) for every partition."""
        return list(zip(self.partitions, self._euclidean or [None] * len(self.partitions)))

    def map_reduce(self, kernel: Callable[..., T], combine: Callable[[T, T], T], *params) -> T:
        layout = self.inputs.layout
        # One task holds the parameters (an OOD reference sample, a set of positions): every
        # partition's task depends on it instead of carrying its own copy.
        shared = dask.delayed(params, traverse=False)
        mapped = [
            dask.delayed(_apply)(part, layout, kernel, shared, euclid)
            for part, euclid in self._with_euclidean()
        ]
        return self.client.compute(delayed_tree(mapped, combine)).result()

    def write_parts(self, kernel: Callable[..., pd.DataFrame], name: str, *params) -> str | None:
        """Every partition writes parts_dir/name/part-NNNNN.parquet from its worker."""
        if self.parts_dir is None:
            return None
        import fsspec

        folder = f"{str(self.parts_dir).rstrip('/')}/{name}"
        fs, root = fsspec.core.url_to_fs(folder)
        fs.makedirs(root, exist_ok=True)
        layout = self.inputs.layout
        writes = [
            dask.delayed(_write)(
                part, layout, kernel, params, f"{folder}/part-{i:05d}.parquet", euclid
            )
            for i, (part, euclid) in enumerate(self._with_euclidean())
        ]
        self.client.compute(delayed_tree(writes, _sum)).result()
        return folder

    def group_by_key(
        self,
        emit: Callable[..., pd.DataFrame],
        reduce_group: Callable[[pd.DataFrame], pd.DataFrame],
        *params,
    ) -> pd.DataFrame:
        """Each partition emits keyed rows; a shuffle on `key` brings equal keys into one
        partition, where reduce_group keeps what it wants; the driver gets the concatenation."""
        import dask.dataframe as dd

        layout = self.inputs.layout
        meta = emit(partition_chunk(self._meta, layout), *params)
        emitted = [
            dask.delayed(_apply)(part, layout, emit, params, euclid)
            for part, euclid in self._with_euclidean()
        ]
        keyed = dd.from_delayed(emitted, meta=meta, verify_meta=False)
        grouped = keyed.shuffle(on="key", npartitions=keyed.npartitions)
        reduced = grouped.map_partitions(reduce_group, meta=reduce_group(meta))
        return self.client.compute(reduced).result().reset_index(drop=True)


def _sum(a: int, b: int) -> int:
    return a + b


# -- the run --------------------------------------------------------------------------------------
def start_local_cluster(n_workers: int, memory_limit: str | None = None):
    """A LocalCluster of n single-threaded worker processes, each with a memory limit (default:
    an equal share of this machine's memory) past which it spills partitions to disk."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit or "auto",
        dashboard_address=":0",  # any free port: a second cluster on this machine must not clash
        # The cluster's own log lines (workers killed on close, ...) are not the user's concern.
        silence_logs=logging.ERROR,
    )
    return Client(cluster)


@contextlib.contextmanager
def cluster_session(scheduler: str | None, workers: int | None, memory_limit, out: Path):
    """{"client", "parts_dir"} for one run: a client of the scheduler at `scheduler`, or of a
    LocalCluster of `workers` processes started (and closed) here; parts staged inside `out`."""
    import tempfile

    from distributed import Client

    from dataaudit.engine import PARTS_PREFIX

    parts = Path(tempfile.mkdtemp(prefix=PARTS_PREFIX, dir=out))
    client = Client(scheduler) if scheduler else start_local_cluster(workers, memory_limit)
    try:
        yield {"client": client, "parts_dir": str(parts)}
    except BaseException:
        shutil.rmtree(parts, ignore_errors=True)
        raise
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None and not scheduler:
            cluster.close()


def has_input(inputs: PartitionedInputs, config: AuditConfig, name: str, with_embeddings: bool):
    """AuditDataset.has for partitioned inputs, from the facts the driver keeps."""
    n_items = sum(c[0] for c in inputs.split_counts.values())
    n_labeled = sum(c[1] for c in inputs.split_counts.values())
    return {
        "probs": True,
        "labels": sum(1 for c in inputs.label_counts if c > 0) >= 2,
        "embeddings": with_embeddings,
        "committee": inputs.layout.n_models > 1,
        "unlabeled": n_labeled < n_items,
        "metadata": bool(inputs.metadata_columns),
        "text": config.columns.text is not None,
        "images": config.columns.image is not None,
    }.get(name, False)  # inputs the Dask engine does not read yet


def audit_on_dask(
    table,
    probs,
    embeddings,
    config: AuditConfig,
    progress: Progress,
    *,
    client=None,
    analyses: tuple[str, ...] | None = None,
    parts_dir: str | None = None,
    verdicts: pd.DataFrame | None = None,
):
    """audit() on a Dask cluster; see the module docstring. `verdicts`: the ledger's latest
    verdicts, read on the driver (pipeline._read_verdicts)."""
    import time

    from dataaudit import __version__
    from dataaudit import analyses as registry
    from dataaudit.engine.loop import run_registry

    if client is None:
        from distributed import get_client

        try:
            client = get_client()
        except ValueError:
            raise InputError(
                [
                    Problem(
                        "no_dask_client",
                        "engine 'dask' needs a cluster",
                        source="engine",
                        fix="Pass client=distributed.Client(...), or on the command line "
                        "--scheduler ADDRESS or --workers N.",
                    )
                ]
            ) from None
    forms = registry.engine_forms()
    _refuse_unported(config, forms, analyses, embeddings is not None)
    clock = time.perf_counter()
    client.get_task_stream(start=0, stop=0)  # installs the scheduler's task-stream plugin
    started, sent_before = time.time(), client.run(_bytes_sent)
    with progress.step("read and validate inputs on the cluster"):
        inputs = read_partitioned(table, probs, embeddings, config, client)
    engine = DaskEngine(inputs, client, parts_dir, verdicts)
    with progress.step("check that labels and probabilities describe the same classes"):
        doubts = check_labels_on(engine, inputs, config, str(probs))
    ctx = AuditContext(config, progress)
    ctx.timings["load_and_validate"] = time.perf_counter() - clock

    def has(name: str) -> bool:
        if name == "verdicts":
            return verdicts is not None and len(verdicts) > 0
        return has_input(inputs, config, name, embeddings is not None)

    def skip_reason(analysis) -> str | None:
        # An analysis' own skip test reads the split names only (shift: a second split).
        if analysis.skip_reason is None:
            return None
        splits = types.SimpleNamespace(splits=np.array(sorted(inputs.split_counts), dtype=object))
        return analysis.skip_reason(splits, config)

    results, skipped, failed, titles = run_registry(
        ctx,
        has,
        lambda analysis: forms[analysis.name](engine, ctx, config),
        analyses,
        skip_reason,
    )
    from dataaudit.report import ITEM_PARTS, AuditReport, partitioned_tables

    # The per-item facts of every row, written by the workers: what `compare` joins two runs on.
    with progress.step("write the per-item facts"):
        engine.write_parts(_items_rows, ITEM_PARTS, None, engine.classes)

    # Each worker's own peak resident memory (the driver's is its own process's).
    from dataaudit.engine.loop import peak_rss_mb

    peaks = {str(w): mb for w, mb in client.run(peak_rss_mb).items()}
    sent = sum(b - sent_before.get(w, 0) for w, b in client.run(_bytes_sent).items())
    return AuditReport(
        dataset=describe_partitioned(inputs, embeddings is not None),
        items=items_for(engine, results),
        results=results,
        config=config,
        run={
            "dataaudit_version": __version__,
            "engine": {
                "name": "dask",
                "partitions": len(inputs.parts),
                "workers": len(peaks),
                "worker_peak_rss_mb": peaks,
                # Where the cluster spent its time, and what its workers sent each other and
                # the driver (benchmarks/distributed.py projects larger runs from these).
                "task_costs": task_costs(client.get_task_stream(start=started)),
                "bytes_sent_by_workers": int(sent),
                **({"knn": knn_facts(engine.graph_info)} if engine.graph_info else {}),
            },
            "inputs": [s.__dict__ for s in inputs.sources],
            "timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
            "peak_rss_mb_after": dict(ctx.peak_rss_mb),
        },
        skipped=skipped,
        failed=failed,
        titles=titles,
        # Until the CLI moves them into audit/, the parts sit in their staging folder (a
        # --baseline comparison reads them there).
        parts=partitioned_tables(Path(parts_dir)) if parts_dir and Path(parts_dir).is_dir() else {},
        warnings=[*inputs.warnings, *doubts],
    )


def _bytes_sent(dask_worker) -> int:
    return int(dask_worker.transfer_outgoing_bytes_total)


def task_costs(stream: list[dict]) -> dict[str, dict]:
    """Per task name (the function a task runs): tasks, seconds computing, receiving inputs
    from other workers and spilling to or reading from disk, and MB of output, from the
    scheduler's task stream; the costliest first."""
    from distributed.utils import key_split

    action_field = {
        "compute": "compute_s",
        "transfer": "transfer_s",
        "disk-read": "spill_s",
        "disk-write": "spill_s",
    }
    costs: dict[str, dict] = {}
    for task in stream:
        cost = costs.setdefault(
            key_split(task["key"]),
            {"tasks": 0, "compute_s": 0.0, "transfer_s": 0.0, "spill_s": 0.0, "output_mb": 0.0},
        )
        cost["tasks"] += 1
        cost["output_mb"] += (task.get("nbytes") or 0) / 2**20
        for span in task.get("startstops", ()):
            field = action_field.get(span.get("action"))
            if field:
                cost[field] += span["stop"] - span["start"]
    ranked = sorted(costs.items(), key=lambda item: -item[1]["compute_s"])
    return {
        name: {key: round(v, 3) if isinstance(v, float) else v for key, v in cost.items()}
        for name, cost in ranked
    }


def check_labels_on(engine: DaskEngine, inputs: PartitionedInputs, config, probs_name: str):
    """The safety net (dataaudit/sanity.py) as one map/reduce pass: raises InputError on a
    misread, returns its warnings."""
    from dataaudit import sanity
    from dataaudit.engine import add

    k = len(inputs.classes)
    counts = engine.map_reduce(_label_counts, add, k, config.seed)
    check = sanity.from_counts(counts, k)
    return sanity.decide(check, inputs.classes, Path(probs_name).name, inputs.class_source, config)


def _label_counts(chunk: Chunk, k: int, seed: int) -> dict:
    from dataaudit.sanity import label_counts

    return label_counts(chunk.probs, chunk.labels, chunk.pos, k, seed)


def knn_facts(info) -> dict:
    """The kNN graph's facts for the report's run info."""
    return {
        "k": info.k,
        "method": info.method,
        "recall_at_k": info.recall,
        "offset_centered": info.center is not None,
    }


def _refuse_unported(config, forms, selected, with_embeddings: bool) -> None:
    """A coded usage error naming the analyses this run would need that have no engine form."""
    from dataaudit import analyses as registry
    from dataaudit.analyses.label_errors_chunks import unsupported

    problems = []
    # Without --analyses every analysis would run: name all that have no engine form yet.
    wanted = registry.names() if selected is None else selected
    unported = [name for name in wanted if name not in forms]
    if unported:
        problems.append(
            Problem(
                "analysis_not_on_dask",
                "these analyses do not run on the Dask engine yet: " + ", ".join(unported),
                source="--engine dask" if selected is None else "--analyses",
                fix=(
                    "Select the ones that do with --analyses " + ",".join(forms) + ", or run in "
                    "process."
                    if selected is None
                    else "Leave them out (available on Dask: " + ", ".join(forms) + ")."
                ),
            )
        )
    why = unsupported(config, with_embeddings)
    if why is not None and (selected is None or "label_errors" in selected):
        problems.append(
            Problem(
                "option_not_on_dask",
                f"the Dask engine finds label errors chunk by chunk; it does not support {why}",
                source="--engine dask",
                fix="Use the defaults, or run in process.",
            )
        )
    if problems:
        raise InputError(problems)


def describe_partitioned(inputs: PartitionedInputs, with_embeddings: bool) -> dict:
    """pipeline.describe_dataset's dict, from the partition facts."""
    splits = {
        name: {"n_items": c[0], "n_labeled": c[1]}
        for name, c in sorted(inputs.split_counts.items())
    }
    n_items = sum(c[0] for c in inputs.split_counts.values())
    n_labeled = sum(c[1] for c in inputs.split_counts.values())
    return {
        "n_items": n_items,
        "n_labeled": n_labeled,
        "n_unlabeled": n_items - n_labeled,
        "unlabeled_by_value": dict(inputs.unlabeled_by_value),
        "splits": splits,
        "classes": list(inputs.classes),
        "class_source": inputs.class_source,
        "labeled_per_class": dict(zip(inputs.classes, inputs.label_counts)),
        "n_models": inputs.layout.n_models,
        "embedding_dim": len(inputs.layout.embeddings) if with_embeddings else None,
        "metadata_columns": list(inputs.metadata_columns),
        "has_text": "text" in dict(inputs.layout.columns),
        "has_images": "image" in dict(inputs.layout.columns),
    }


def items_for(engine: DaskEngine, results) -> pd.DataFrame:
    """AuditDataset.items_frame's rows, for the ids the (capped) result tables mention."""
    ids = set()
    for result in results.values():
        table = result.tables.get("items")
        if table is not None and "id" in table:
            ids.update(table["id"].astype(str))
    classes = engine.classes
    wanted = frozenset(ids)
    frame = engine.map_reduce(_items_rows, concat, wanted, classes).rename(columns={"pos": "_pos"})
    return frame.sort_values("_pos", kind="stable").drop(columns="_pos").reset_index(drop=True)


def _items_rows(chunk: Chunk, wanted: frozenset | None, classes: tuple[str, ...]) -> pd.DataFrame:
    """AuditDataset.items_frame's columns (and `pos`) for the chunk's rows whose id is in
    `wanted`, or for all of them (None)."""
    from dataaudit.engine import label_names

    if wanted is None:
        rows = np.arange(len(chunk))
    else:
        rows = np.flatnonzero([i in wanted for i in chunk.ids]) if wanted else np.zeros(0, int)
    probs = chunk.probs[rows]
    return pd.DataFrame(
        {
            "pos": chunk.pos[rows],
            "id": chunk.ids[rows],
            "split": chunk.splits[rows],
            "given_label": label_names(classes, chunk.labels[rows]),
            "predicted_label": label_names(classes, probs.argmax(axis=1)),
            "predicted_prob": probs.max(axis=1).astype(np.float32) if len(rows) else [],
        }
    )


def place_parts(parts_dir: str | os.PathLike, out: Path) -> list[Path]:
    """Move the workers' Parquet datasets (parts_dir/<analysis>.all_<table>.parquet/) into
    OUT/audit/, replacing those of an earlier run."""
    from dataaudit.report import REPORT_DIR

    moved = []
    for folder in sorted(Path(parts_dir).iterdir()):
        target = out / REPORT_DIR / folder.name
        shutil.rmtree(target, ignore_errors=True)
        folder.rename(target)
        moved.append(target)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return moved
