"""The safety net: do the probabilities and the labels describe the same classes, row by row?

Run after reading and before any analysis. A misread input (probability rows in another order
than the table, class columns in another order than the class names) does not look wrong to any
single check: every file is well formed. It shows in one number, the model's agreement with the
given labels, compared with two references:

- chance: the agreement of a predictor with the model's prediction mix that ignores the inputs
  (Cohen's expected agreement, sum_j share_labeled(j) * share_predicted(j));
- the best one-to-one relabelling of the classes: the permutation of the probability columns that
  maximises agreement on the K x K confusion matrix (Hungarian assignment).

Agreement is compared in kappa units, kappa = (agreement - chance) / (1 - chance): 0 at chance,
1 when every label is predicted. The model's own claim is the same kappa computed as if its
probabilities were the truth (mean top-class probability against the chance of its mean
probabilities), so a confident model claims a high kappa and an uninformative one claims ~0.

Decisions (every margin is a sampling error at ALPHA, one-sided, on the labeled count):
- stop `label_agreement_at_chance`: the model is confident (claims kappa >= CONFIDENT_KAPPA), the
  agreement is not significantly above chance (Wilson lower bound <= chance), and the data rule
  out even a quarter of the claimed kappa (Wilson upper bound below it: honest models are often
  overconfident, rarely 4x). Rows shuffled or sorted apart from the table end here.
- stop `class_order_permuted`: the permutation is chosen on a random half of the labeled items
  and tested on the other half (a paired binomial test per cycle of classes it moves, Bonferroni
  over the cycles), so the choice cannot flatter it; it stops the run when the significant cycles
  lift agreement significantly above chance and the identity order explains less than half of
  the permutation's kappa (Wilson upper bound below it).
- warnings: a significant permutation on a few classes (`class_columns_swapped`), agreement
  below half the claimed kappa without the evidence to stop (`label_agreement_low`), and a
  model that claims nothing (`probabilities_uninformative`).
With `allow_label_mismatch` a stop becomes a warning with the same code.

Cost: one pass over the rows in chunks (`label_counts`, a kernel any engine runs; its partials
add up) (argmax, max, a tie count) and a bincount into
K x K confusion matrices; the assignment is on K x K. No N x K copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.special import bdtrc

from dataaudit.config import AuditConfig
from dataaudit.dataset import AuditDataset
from dataaudit.problems import AuditWarning, Problem
from dataaudit.stats import wilson_interval

# One-sided false-alarm rate of each test on honest data.
ALPHA = 1e-3
# A model "is confident" when its probabilities claim at least this kappa over their own chance:
# above Landis & Koch's "slight" agreement (kappa <= 0.2). Below it a misread cannot be told from a
# weak model, and the audit of a weak model is weak anyway (a warning says so).
CONFIDENT_KAPPA = 0.2
# Overconfidence an honest model may have: its kappa over chance may fall to this share of the
# kappa its probabilities claim. Stopping needs the data to rule out even a quarter of the claim
# (a model 4x overconfident in kappa, e.g. weak probabilities sharpened to the third power, still
# passes); the warning fires below half.
STOP_CLAIM_SHARE = 0.25
WARN_CLAIM_SHARE = 0.5
# Top-class probabilities within this of the runner-up are a tie: no prediction for the
# permutation (uniform rows would otherwise all "predict" column 0).
_TIE = 1e-6
CHUNK_ROWS = 65_536
_MAX_LISTED = 10


@dataclass(frozen=True)
class LabelCheck:
    """What the safety net measured over the labeled items."""

    n_labeled: int
    agreement: float  # share of labeled items whose top class is the given label
    agreement_low: float  # Wilson bounds at 1 - 2 ALPHA
    agreement_high: float
    chance: float
    kappa: float
    confidence: float  # mean top-class probability
    claimed_kappa: float
    permutation: tuple[int, ...]  # column j fits label permutation[j]: significant cycles only
    permuted_agreement: float
    permuted_chance: float
    permuted_kappa: float
    moved_share: float  # share of labeled items whose label is a class the permutation moves

    @property
    def moved(self) -> list[int]:
        return [j for j, to in enumerate(self.permutation) if to != j]

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "permutation"}
        out["permutation_moves"] = {str(j): int(self.permutation[j]) for j in self.moved}
        return out


def check_labels(data: AuditDataset, config: AuditConfig) -> tuple[LabelCheck, list[AuditWarning]]:
    """Measure agreement; raise InputError on a misread, return the warnings otherwise."""
    check = measure(data.probs, data.labels, data.k, seed=config.seed)
    return check, decide(check, data.classes, _probs_name(data), data.class_source, config)


def decide(
    check: LabelCheck, classes: tuple[str, ...], probs_name: str, class_source: str, config
) -> list[AuditWarning]:
    """Raise InputError on a misread (unless allowed); the warnings otherwise."""
    from dataaudit.problems import InputError

    problems, warnings = judge(check, classes, probs_name, class_source)
    if problems and not config.allow_label_mismatch:
        raise InputError(problems)
    overridden = [
        AuditWarning(
            p.code,
            f"{p.message}. Continuing because --allow-label-mismatch was given: every result"
            " below assumes the model really is this poor.",
            file=p.source,
        )
        for p in problems
    ]
    return overridden + warnings


def measure(probs: NDArray, labels: NDArray[np.int64], k: int, seed: int = 0) -> LabelCheck:
    """Agreement, chance, the model's claim and the held-out best permutation; chunked over rows."""
    counts = None
    for start in range(0, len(labels), CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, len(labels)))
        part = label_counts(
            np.asarray(probs[rows], dtype=np.float32),
            labels[rows],
            np.arange(rows.start, rows.stop, dtype=np.int64),
            k,
            seed,
        )
        counts = part if counts is None else add_counts(counts, part)
    return from_counts(counts, k)


def label_counts(
    p: NDArray[np.float32], labels: NDArray[np.int64], pos: NDArray[np.int64], k: int, seed: int
) -> dict:
    """A chunk's sufficient statistics: the K x K confusion matrix [predicted, given] of its
    labeled rows, the same without ties per held-out half, probability sums and the top-class
    sum. The half of a row is a hash of its table position, so any chunking gives the same."""
    labeled = labels >= 0
    p, y = p[labeled], labels[labeled]
    top = p.argmax(axis=1) if len(p) else np.zeros(0, np.int64)
    top_p = p[np.arange(len(p)), top]
    # Two classes within _TIE of each other both hold at most 1/2: only those rows can tie.
    tie = np.zeros(len(p), dtype=bool)
    low = np.flatnonzero(top_p <= 0.5 + _TIE)
    if len(low):
        near_top = p[low] >= (top_p[low] - _TIE)[:, None]
        tie[low] = np.count_nonzero(near_top, axis=1) > 1
    cells = top * k + y
    in_b = _half(pos[labeled], seed)
    halves = np.stack(
        [np.bincount(cells[m], minlength=k * k).reshape(k, k) for m in (~in_b & ~tie, in_b & ~tie)]
    )
    return {
        "confusion": np.bincount(cells, minlength=k * k).reshape(k, k).astype(np.int64),
        "halves": halves.astype(np.int64),
        "prob_sums": p.sum(axis=0, dtype=np.float64),  # float64 across chunks
        "top_sum": float(top_p.sum(dtype=np.float64)),
    }


def add_counts(a: dict, b: dict) -> dict:
    return {key: a[key] + b[key] for key in a}


def _half(pos: NDArray[np.int64], seed: int) -> NDArray[np.bool_]:
    """A fair coin per table position (splitmix64 of position and seed)."""
    with np.errstate(over="ignore"):
        z = pos.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(63)).astype(bool)


def from_counts(counts: dict, k: int) -> LabelCheck:
    """The LabelCheck of the summed chunk statistics."""
    from scipy.optimize import linear_sum_assignment

    confusion, halves = counts["confusion"], counts["halves"]
    n = int(confusion.sum())
    label_share = confusion.sum(axis=0) / n
    predicted_share = confusion.sum(axis=1) / n
    agreement = np.trace(confusion) / n
    chance = float(label_share @ predicted_share)
    confidence = counts["top_sum"] / n
    claimed_chance = float((counts["prob_sums"] / n) @ predicted_share)
    low, high = wilson_interval(np.trace(confusion), n, 1 - 2 * ALPHA)

    permutation = held_out_permutation(halves[0], halves[1], linear_sum_assignment)
    permuted_agreement = confusion[np.arange(k), permutation].sum() / n
    # Chance of the permuted predictions: predicted share of column j moves to label permutation[j].
    permuted_chance = float(label_share[permutation] @ predicted_share)
    moved = permutation != np.arange(k)
    return LabelCheck(
        n_labeled=n,
        agreement=float(agreement),
        agreement_low=float(low),
        agreement_high=float(high),
        chance=chance,
        kappa=_kappa(agreement, chance),
        confidence=confidence,
        claimed_kappa=_kappa(confidence, claimed_chance),
        permutation=tuple(int(j) for j in permutation),
        permuted_agreement=float(permuted_agreement),
        permuted_chance=permuted_chance,
        permuted_kappa=_kappa(permuted_agreement, permuted_chance),
        moved_share=float(label_share[np.flatnonzero(moved)].sum()),
    )


def held_out_permutation(fit: NDArray, test: NDArray, assign) -> NDArray[np.int64]:
    """The best column -> label assignment on `fit`, keeping only cycles that win on `test`.

    Each cycle of classes it moves is tested on the held-out confusion matrix: among held-out
    items predicted as one of its columns, b are right after the move and c before (never both),
    and under "the identity is at least as good" b ~ Binomial(b + c, 1/2).
    """
    k = len(fit)
    _, to = assign(fit, maximize=True)
    result = np.arange(k)
    cycles = [c for c in _cycles(to) if fit[c, to[c]].sum() > fit[c, c].sum()]
    for cycle in cycles:
        b = int(test[cycle, to[cycle]].sum())
        c = int(test[cycle, cycle].sum())
        # P(X >= b) for X ~ Binomial(b + c, 1/2); bdtrc(j, n, p) = P(X > j).
        p_value = float(bdtrc(b - 1, b + c, 0.5)) if b > 0 else 1.0
        if p_value < ALPHA / len(cycles):
            result[cycle] = to[cycle]
    return result


def _cycles(to: NDArray[np.int64]) -> list[NDArray[np.int64]]:
    seen = np.zeros(len(to), dtype=bool)
    cycles = []
    for start in range(len(to)):
        if seen[start] or to[start] == start:
            continue
        cycle, j = [], start
        while not seen[j]:
            seen[j] = True
            cycle.append(j)
            j = to[j]
        cycles.append(np.array(cycle))
    return cycles


def _wilson_low(rate: float, n: int) -> float:
    return float(wilson_interval(round(rate * n), n, 1 - 2 * ALPHA)[0])


def _kappa(agreement: float, chance: float) -> float:
    return float((agreement - chance) / (1 - chance)) if chance < 1 else 0.0


def _agreement_at(kappa: float, chance: float) -> float:
    return chance + kappa * (1 - chance)


def judge(
    check: LabelCheck, classes: tuple[str, ...], source: str, class_source: str
) -> tuple[list[Problem], list[AuditWarning]]:
    """Problems (stop) and warnings from the measured agreement; see the module docstring."""
    c = check
    found = (
        f"the model's top class is the given label for {c.agreement:.1%} of {c.n_labeled:,}"
        f" labeled items (chance for this class mix: {c.chance:.1%}), while its mean top-class"
        f" probability is {c.confidence:.1%}"
    )
    confident = c.claimed_kappa >= CONFIDENT_KAPPA
    near_chance = c.agreement_low <= c.chance
    below_claim = c.agreement_high < _agreement_at(STOP_CLAIM_SHARE * c.claimed_kappa, c.chance)
    permuted = bool(c.moved)
    permutation_fits = (
        permuted
        and c.permuted_kappa > 0
        and c.agreement_high < _agreement_at(c.permuted_kappa / 2, c.chance)
        and _wilson_low(c.permuted_agreement, c.n_labeled) > c.permuted_chance
    )
    problems: list[Problem] = []
    warnings: list[AuditWarning] = []
    mapping = _describe_moves(c, classes)
    order = _classes_flag(c, classes)
    if permutation_fits:
        problems.append(
            Problem(
                "class_order_permuted",
                f"{found}; read with another class order, {c.permuted_agreement:.1%} would agree:"
                f" {mapping} (class order {class_source})",
                source=source,
                fix=f"Give the probability columns' class order: {order}. If the model really is"
                " this poor, pass --allow-label-mismatch.",
            )
        )
    elif confident and near_chance and below_claim:
        problems.append(
            Problem(
                "label_agreement_at_chance",
                f"{found}: the probabilities do not describe these labels; no class order"
                " explains them either",
                source=source,
                fix="Check that the probability rows are in the table's order (an .npy saved"
                " after a sort or a shuffle?), or give them as Parquet/CSV keyed by id; check"
                " that they come from this model and these labels. If the model really is this"
                " poor, pass --allow-label-mismatch.",
            )
        )
    elif permuted:
        warnings.append(
            AuditWarning(
                "class_columns_swapped",
                f"for a few classes another column fits the labels far better: {mapping}"
                f" (agreement {c.agreement:.1%}, {c.permuted_agreement:.1%} with these columns"
                f" moved). Check the class order ({class_source}); if these columns are"
                f" swapped, pass {order}.",
                file=source,
            )
        )
    if problems:
        return problems, warnings
    if confident and c.kappa < WARN_CLAIM_SHARE * c.claimed_kappa:
        warnings.append(
            AuditWarning(
                "label_agreement_low",
                f"{found}: agreement over chance is less than half of what the model's"
                " confidence claims. Labels may be very noisy, the model overconfident, or the"
                " rows misaligned with the table.",
                file=source,
            )
        )
    elif not confident:
        warnings.append(
            AuditWarning(
                "probabilities_uninformative",
                f"{found}: the probabilities barely prefer any class, so label errors and"
                " per-class errors below say little.",
                file=source,
            )
        )
    return problems, warnings


def _describe_moves(check: LabelCheck, classes: tuple[str, ...]) -> str:
    moves = [
        f"column {classes[j]!r} fits the items labeled {classes[to]!r}"
        for j, to in enumerate(check.permutation)
        if to != j
    ]
    more = f", and {len(moves) - _MAX_LISTED} more" if len(moves) > _MAX_LISTED else ""
    return "; ".join(moves[:_MAX_LISTED]) + more


def _classes_flag(check: LabelCheck, classes: tuple[str, ...]) -> str:
    """--classes in the order that fits: column j holds class classes[permutation[j]]."""
    order = [classes[to] for to in check.permutation]
    if len(order) > 30:
        return f"--classes (a file with one class per line, starting {','.join(order[:10])},…)"
    return "--classes " + ",".join(order)


def _probs_name(data: AuditDataset) -> str:
    for source in data.sources:
        if source.role == "probs":
            return Path(source.path).name if source.path else "<in-memory probabilities>"
    return "<in-memory probabilities>"
