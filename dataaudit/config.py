"""Every threshold, budget and column role of a run, in one frozen place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ColumnRoles:
    """Which column of the examples table plays which role."""

    id: str = "id"
    label: str = "label"
    split: str = "split"
    text: str | None = None
    image: str | None = None
    # Columns never used as slice metadata (besides the roles above).
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditConfig:
    """Parameters of one audit. Saved with the report, so a run can be reproduced."""

    columns: ColumnRoles = field(default_factory=ColumnRoles)
    # Class names in probability-column order; None = classes.txt beside the probs, else sorted labels.
    classes: tuple[str, ...] | None = None
    # Label values read as unlabeled besides an empty cell (e.g. ("NA", "-1")); see README.
    unlabeled_values: tuple[str, ...] = ()

    # Validation
    prob_sum_tolerance: float = 1e-3
    # The safety net (sanity.py) stops a run whose labels agree with the model no better than
    # chance, or far better under another class order; True turns that stop into a warning.
    allow_label_mismatch: bool = False

    # Label errors (cleanlab)
    # confidence_and_neighbors | flagged_then_margin | a cleanlab rank method; chosen by
    # benchmarks/label_errors.py on every real set (cifar10, mnist, Roman numerals)
    label_error_score: str = "confidence_and_neighbors"
    # Share of the kNN graph's label vote in the pooled probabilities (0 = the model alone);
    # used only with embeddings. The largest weight that wins or ties cleanlab's best method on
    # every Roman-numerals row with a weak, the given and a strong model (benchmarks/README.md).
    label_error_neighbor_weight: float = 0.15
    # calibrated_count | confident_learning (both per chunk) | a cleanlab filter_by (all rows at
    # once); chosen by benchmarks/scale.py and benchmarks/label_errors.py
    label_error_filter: str = "calibrated_count"
    swapped_pairs_top: int = 20
    examples_per_pair: int = 5

    # Intervals
    confidence_level: float = 0.95

    # Similarity search
    knn_k: int = 10
    knn_mode: str = "auto"  # exact | approx | auto
    knn_device: str = "cpu"  # cpu | cuda | auto
    # Near-duplicates (dataaudit/similarity.py): a pair is a near-duplicate within
    # max(local x the nearer k-th-neighbour distance, global x the median nearest-neighbour
    # distance), a possible one (to review) within the same with the possible_* values. These
    # are caps: in few dimensions the rule shrinks them until locally uniform data would pass a
    # share near_duplicate_tail of items (10x that for the review tier) by chance. The local
    # caps were read off sms-spam, where pairs at half the k-th distance are still spam
    # templates. The global rule is for groups of copies larger than k (which share their k
    # neighbours); Datalab's 0.13 grouped a tight novel cluster, whose cosine pairs sat at
    # 0.10-0.15 x the median (benchmarks/similarity.py), while copies sit near 0.001 x.
    near_duplicate_local: float = 0.3
    near_duplicate_global: float = 0.05
    possible_duplicate_local: float = 0.5
    possible_duplicate_global: float = 0.08
    near_duplicate_tail: float = 0.001
    # auto mode: approximate search above this many items (exact costs N^2 d: 100k x 128 is ~30 s
    # on 2 cores, IVF ~5 s at recall@10 ~0.98; see benchmarks/README.md)
    knn_approx_threshold: int = 50_000
    knn_recall_sample: int = 1000  # queries checked against exact search to report recall@k
    outliers_top: int = 200  # rows of the outlier / OOD tables shown and exported
    outlier_z: float = 3.5  # outlier flag: robust SDs above the median outlier_score
    lookalikes_per_item: int = (
        5  # nearest unlabeled items listed per label-error / misclassified item
    )

    # Reviews (--verdicts): an item reviewed ok comes back into relabel.csv only when its
    # error_score grew by at least this much since the review.
    review_return_margin: float = 0.25

    # Label-next queue
    budget: int = 100
    strategy: str = "mix"
    # Share of the budget per part of the "mix" strategy (normalised to sum 1). Quotas whose
    # inputs are missing (no OOD scores, no known failures, no rare class) go to uncertainty.
    label_next_mix: str = "uncertainty:0.90,rare:0.04,ood:0.03,lookalike:0.03"
    # Auto-label candidates: the confidence cut at which labeled items reach this precision
    # (label noise among the labeled items counts against it, so the estimate is conservative).
    auto_label_precision: float = 0.95

    # Slices: given slices (metadata values, quartile bins, pairs) and discovered failure slices
    slice_min_support: int = 30  # labeled items a slice needs to be tested ...
    slice_min_support_fraction: float = 0.001  # ... or this share of labeled items, if larger
    slice_top_values: int = 50  # per categorical column; the rest become "(other)"
    slice_numeric_bins: int = 16  # quantile thresholds for discovered rules `x < t` / `x >= t`
    slice_given_bins: int = 4  # quantile bins listed as given slices
    slice_min_lift: float = 1.5  # a failure slice errs this many times the overall rate ...
    slice_min_gap: float = 0.05  # ... or this much above it (absolute)
    slice_fdr: float = 0.05  # Benjamini-Hochberg false-discovery rate
    slice_max_discovered: int = 20  # per kind (rules, clusters)
    slice_clusters: int = 256  # finest k-means k over embeddings; coarser levels k/4, k/16, ...
    slice_cluster_sample: int = 50_000  # rows k-means is fitted on (200 per finest cluster)
    slice_examples: int = 5  # example failures and unlabeled candidates per discovered slice
    # Wide tables. 2-condition rules tested at most: beyond this, single conditions are screened
    # and pairs are tested only for the strongest ones, each with every condition of every other
    # column; the pairs screened out still count in the BH family (as p = 1). Given slices list
    # pairs of values only when those fit too.
    slice_max_pairs: int = 200_000
    # Given slices kept (table, report, slices.csv) when more were tested: every significant
    # one, then the most severe few per column, this many rows at most.
    slice_max_given: int = 5_000
    slice_given_per_column: int = 5

    # Shift: reference split vs current split (None: train; production, else test)
    reference_split: str | None = None
    current_split: str | None = None
    shift_fdr: float = 0.05  # Benjamini-Hochberg rate over every test of the shift analysis
    shift_min_effect: float = 0.05  # a shifted column also moves this far (Jensen-Shannon distance)
    shift_bins: int = 10  # reference-quantile bins of a numeric column, for its effect size
    shift_classifier_sample: int = 20_000  # items the embedding domain classifier is fitted on

    # Calibration
    calibration_bins: int = 15  # equal-mass bins of the ECE
    calibration_bootstrap: int = 200  # resamples of the ECE's interval

    # Report
    html_max_rows: int = 500
    embedding_map_points: int = 5000  # items sampled for the 2-D embedding map
    embedding_map_method: str = "pca"  # pca (instant) | tsne (seconds; --embedding-map)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AuditConfig:
        """Rebuild a config saved by `to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        if isinstance(kwargs.get("columns"), dict):
            col_fields = {f.name for f in dataclasses.fields(ColumnRoles)}
            cols = {k: v for k, v in kwargs["columns"].items() if k in col_fields}
            cols["ignore"] = tuple(cols.get("ignore", ()))
            kwargs["columns"] = ColumnRoles(**cols)
        if kwargs.get("classes") is not None:
            kwargs["classes"] = tuple(kwargs["classes"])
        if "unlabeled_values" in kwargs:
            kwargs["unlabeled_values"] = tuple(kwargs["unlabeled_values"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> AuditConfig:
        return dataclasses.replace(self, **changes)
