"""Honest numbers for tiny sets: 95 % intervals for proportions and for the ROC AUC.

Ten validation images cannot show that a model is 100 % right: 10 correct out of 10 is what a
model that is right only three times in four would also produce, now and then. Every accuracy,
sensitivity, specificity and AUC the kit shows therefore comes with a 95 % interval:

* :func:`wilson_interval` / :class:`Proportion` — the Wilson score interval for a share such as
  "9 of 10 correct". Unlike the textbook "p ± 1.96 standard errors" it stays inside 0..1 and does
  not collapse to a point at 0 or 10 of 10, which is exactly where small sets end up.
* :func:`auc_interval` — a bootstrap interval for the AUC, seeded (the kit passes
  ``settings.seed``): the images are drawn again with replacement within each class, the AUC is
  recomputed each time, and the middle 95 % of those AUCs is the interval. When every image is
  already ranked correctly, every redraw gives 1.00 and the bootstrap cannot show any
  uncertainty; the interval then comes from a score method for the AUC (Newcombe 2006) that does
  not collapse, and says so.
* :func:`predictive_values` — what a sensitivity and specificity mean for the people who get a
  positive answer (PPV) at a given prevalence.

Only NumPy here: this module sits at the bottom of the kit and every other module may use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

#: The two-sided 95 % point of the standard normal distribution.
Z_95 = 1.959963984540054

#: How many bootstrap redraws an AUC interval uses (enough for stable 2.5th/97.5th percentiles).
BOOTSTRAP_RESAMPLES = 2000

#: The sentence every lesson and the model card use when a tiny set scores (nearly) perfectly.
SMALL_SET_SENTENCE = ("With this few images a perfect score does not mean the model is perfect: the 95 % "
                      "interval shows how much lower its real accuracy on new images could plausibly be.")


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The 95 % Wilson score interval of ``successes`` out of ``total`` (``(0, 1)`` for an empty set)."""
    if total <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= total:
        raise ValueError(f"successes must be between 0 and total ({total}), not {successes}")
    share = successes / total
    denominator = 1.0 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    # At 0 or all of ``total`` one end is exactly 0 or 1; rounding must not move it off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return low, high


def _percent(value: float) -> str:
    return f"{value:.0%}"


class Proportion(NamedTuple):
    """``count`` out of ``total``, its share and 95 % Wilson interval; ``str()`` reads "9/10 (90%, 95% CI 60–98%)"."""

    count: int
    total: int

    @property
    def rate(self) -> float:
        return self.count / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.count, self.total)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    def as_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {"value": self.rate if self.total else None, "count": self.count, "total": self.total,
                "ci95_low": low, "ci95_high": high, "method": "Wilson score interval"}

    def __str__(self) -> str:
        if not self.total:
            return "0/0 (no images)"
        low, high = self.interval
        return f"{self.count}/{self.total} ({_percent(self.rate)}, 95% CI {_percent(low)}–{_percent(high)})"


# --- the AUC -----------------------------------------------------------------------------------------
def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties sharing their mean rank (as the Mann-Whitney statistic needs)."""
    from scipy.stats import rankdata  # scikit-learn's own dependency; imported here to keep start-up fast

    return rankdata(values, axis=-1)


def auc(y_true: Sequence[int], y_score: Sequence[float]) -> float | None:
    """ROC AUC: the chance that a random class-1 image scores above a random class-0 image (ties count half).

    ``None`` when one of the classes is missing (there is then no pair to compare).
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    positives, negatives = int((y_true == 1).sum()), int((y_true == 0).sum())
    if not positives or not negatives:
        return None
    ranks = _ranks(y_score)
    return float((ranks[y_true == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _auc_variance(theta: np.ndarray, positives: int, negatives: int) -> np.ndarray:
    """Hanley and McNeil's variance of an AUC, with Newcombe's (2006) common sample size N* = (m + n)/2 - 1."""
    shared = (positives + negatives) / 2.0 - 1.0
    return (theta * (1 - theta) / (positives * negatives)
            * (1 + (shared - 1) * (1 - theta) / (2 - theta) + (shared - 1) * theta / (1 + theta)))


def auc_score_interval(value: float, positives: int, negatives: int, z: float = Z_95) -> tuple[float, float]:
    """A 95 % score interval for an AUC (every θ with (AUC − θ)² ≤ z² · Var(θ)); it never collapses at 0 or 1."""
    grid = np.linspace(0.0, 1.0, 20001)
    inside = grid[(value - grid) ** 2 <= z * z * _auc_variance(grid, positives, negatives)]
    if not len(inside):  # cannot happen for 0 <= value <= 1, but a point is the safe answer
        return value, value
    return float(inside.min()), float(inside.max())


@dataclass(frozen=True)
class Estimate:
    """A number with its 95 % interval and how the interval was made; ``str()`` reads "0.95 (95% CI 0.80–1.00)"."""

    value: float
    low: float
    high: float
    method: str
    note: str = ""

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high

    def as_dict(self) -> dict[str, Any]:
        data = {"value": self.value, "ci95_low": self.low, "ci95_high": self.high, "method": self.method}
        if self.note:
            data["note"] = self.note
        return data

    def __str__(self) -> str:
        return f"{self.value:.2f} (95% CI {self.low:.2f}–{self.high:.2f})"


def auc_interval(y_true: Sequence[int], y_score: Sequence[float], *, seed: int,
                 resamples: int = BOOTSTRAP_RESAMPLES) -> Estimate | None:
    """The AUC with a seeded, stratified bootstrap 95 % interval (``None`` if a class is missing).

    Each redraw keeps the number of images of each class (so both classes are always there). If
    the bootstrap cannot vary (every redraw gives the same AUC, as when all images are ranked
    correctly) the interval is Newcombe's score interval instead, and ``note`` says why.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    value = auc(y_true, y_score)
    if value is None:
        return None
    positive_scores, negative_scores = y_score[y_true == 1], y_score[y_true == 0]
    generator = np.random.default_rng(int(seed))
    drawn_positive = positive_scores[generator.integers(0, len(positive_scores), (resamples, len(positive_scores)))]
    drawn_negative = negative_scores[generator.integers(0, len(negative_scores), (resamples, len(negative_scores)))]
    ranks = _ranks(np.concatenate([drawn_positive, drawn_negative], axis=1))
    m, n = len(positive_scores), len(negative_scores)
    aucs = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    low, high = (float(v) for v in np.percentile(aucs, [2.5, 97.5]))
    if high - low > 1e-12:
        return Estimate(value, low, high, f"stratified bootstrap, {resamples} redraws, seed {int(seed)}")
    low, high = auc_score_interval(value, m, n)
    return Estimate(value, low, high, "score interval for the AUC (Newcombe 2006)",
                    note=(f"every bootstrap redraw of these {m} + {n} images gives {value:.2f}, so the bootstrap "
                          "cannot show the uncertainty; a score interval is used instead"))


# --- what a result means for the patient in front of you ----------------------------------------------
def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """(PPV, NPV): the share of positive answers that are right, and of negative answers that are right."""
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be between 0 and 1, not {prevalence}")
    true_positive = sensitivity * prevalence
    false_positive = (1.0 - specificity) * (1.0 - prevalence)
    true_negative = specificity * (1.0 - prevalence)
    false_negative = (1.0 - sensitivity) * prevalence
    positive, negative = true_positive + false_positive, true_negative + false_negative
    return (true_positive / positive if positive else float("nan"),
            true_negative / negative if negative else float("nan"))


__all__ = [
    "BOOTSTRAP_RESAMPLES", "Estimate", "Proportion", "SMALL_SET_SENTENCE", "Z_95", "auc", "auc_interval",
    "auc_score_interval", "predictive_values", "wilson_interval",
]
