"""AuditDataset: the one typed, validated, in-memory dataset every analysis reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.problems import AuditWarning

UNLABELED = -1

# Names an analysis may list in `Analysis.requires`.
INPUTS = (
    "probs",
    "labels",
    "embeddings",
    "committee",
    "unlabeled",
    "metadata",
    "text",
    "images",
    "verdicts",
)


@dataclass(frozen=True)
class InputFingerprint:
    """Where an input came from, so a report says what it was computed on."""

    role: str  # table | probs | embeddings
    path: str | None  # None for in-memory inputs
    size_bytes: int | None
    sha256: str | None  # of the first and last MiB plus the size: cheap on huge files
    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class AuditDataset:
    """Examples, model outputs and embeddings, aligned row by row.

    Row i of every array is the item `ids[i]`. Labels are class indices into `classes`,
    UNLABELED (-1) where the table has no label.
    """

    ids: NDArray  # user ids, int64 or object (str)
    classes: tuple[str, ...]
    class_source: str  # how the class order was decided, shown in the report
    labels: NDArray[np.int64]
    splits: NDArray  # object (str); "all" when the table has no split column
    metadata: pd.DataFrame  # slice columns, RangeIndex aligned with rows
    probs: NDArray[np.float32]  # N x K; the mean over models when several were given
    member_probs: NDArray | None = None  # M x N x K when M > 1 models / passes were given
    embeddings: NDArray | None = None  # N x d, possibly a float16 memmap
    text: NDArray | None = None  # object (str) or None
    image_paths: NDArray | None = None  # object (str, absolute) or None
    sources: tuple[InputFingerprint, ...] = field(default=())
    # The latest reviewers' verdict per (id, list) from the ledger (dataaudit/verdicts.py).
    verdicts: pd.DataFrame | None = None
    # Doubts found while reading that did not stop the run (the report lists them first).
    warnings: tuple[AuditWarning, ...] = field(default=())
    # Why rows are unlabeled: ("", n) for empty cells, then (value, n) per --unlabeled-values.
    unlabeled_by_value: tuple[tuple[str, int], ...] = field(default=())

    # -- shape -------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def k(self) -> int:
        return len(self.classes)

    @property
    def n_models(self) -> int:
        return 1 if self.member_probs is None else int(self.member_probs.shape[0])

    @property
    def labeled(self) -> NDArray[np.bool_]:
        return self.labels != UNLABELED

    @property
    def predicted(self) -> NDArray[np.int64]:
        return self.probs.argmax(axis=1).astype(np.int64)

    def label_names(self, indices: NDArray) -> NDArray:
        """Class names for class indices; "" for UNLABELED."""
        names = np.array(list(self.classes) + [""], dtype=object)
        idx = np.asarray(indices)
        return names[np.where(idx < 0, len(self.classes), idx)]

    # -- which inputs exist -------------------------------------------------------------------
    def has(self, name: str) -> bool:
        if name == "probs":
            return self.probs is not None
        if name == "labels":
            return len(np.unique(self.labels[self.labeled])) >= 2
        if name == "embeddings":
            return self.embeddings is not None
        if name == "committee":
            return self.n_models > 1
        if name == "unlabeled":
            return bool((~self.labeled).any())
        if name == "metadata":
            return self.metadata.shape[1] > 0
        if name == "text":
            return self.text is not None
        if name == "images":
            return self.image_paths is not None
        if name == "verdicts":
            return self.verdicts is not None and len(self.verdicts) > 0
        raise ValueError(f"unknown input name {name!r}; known: {', '.join(INPUTS)}")

    def missing_inputs(self, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if not self.has(name)]

    def items_frame(self) -> pd.DataFrame:
        """The per-item facts every renderer may need: id, split, labels, prediction, content."""
        frame = pd.DataFrame(
            {
                "id": self.ids,
                "split": self.splits,
                "given_label": self.label_names(self.labels),
                "predicted_label": self.label_names(self.predicted),
                "predicted_prob": self.probs.max(axis=1).astype(np.float32),
            }
        )
        if self.text is not None:
            frame["text"] = self.text
        if self.image_paths is not None:
            frame["image_path"] = self.image_paths
        if len(self.metadata.columns):  # one block: a wide table would fragment the frame
            meta = {f"meta:{c}": self.metadata[c].to_numpy() for c in self.metadata.columns}
            frame = pd.concat([frame, pd.DataFrame(meta, index=frame.index)], axis=1)
        return frame
