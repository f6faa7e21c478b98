"""95 % intervals for tiny sets: Wilson for shares, a seeded bootstrap (or a score interval) for the AUC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hello_dl import stats


@pytest.mark.parametrize("successes, total, low, high", [
    # Reference values of the Wilson score interval (z = 1.96), as tabulated by Newcombe (1998).
    (10, 10, 0.7225, 1.0),
    (9, 10, 0.5958, 0.9821),
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_matches_reference_values(successes, total, low, high):
    got = stats.wilson_interval(successes, total)
    assert got == pytest.approx((low, high), abs=5e-4)


def test_wilson_interval_properties():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)  # no images: nothing is known
    for total in (1, 2, 10, 65):
        for successes in range(total + 1):
            low, high = stats.wilson_interval(successes, total)
            assert 0.0 <= low <= successes / total <= high <= 1.0
            mirrored = stats.wilson_interval(total - successes, total)
            assert (1 - mirrored[1], 1 - mirrored[0]) == pytest.approx((low, high))
    # More images, narrower interval (the same share).
    widths = [np.subtract(*stats.wilson_interval(n, n)[::-1]) for n in (2, 10, 65, 1000)]
    assert widths == sorted(widths, reverse=True)
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


def test_proportion_reads_plainly():
    share = stats.Proportion(9, 10)
    assert share.rate == 0.9 and share.interval == stats.wilson_interval(9, 10)
    assert str(share) == "9/10 (90%, 95% CI 60%–98%)"
    assert share.as_dict() == {"value": 0.9, "count": 9, "total": 10, "ci95_low": share.low,
                               "ci95_high": share.high, "method": "Wilson score interval"}
    assert str(stats.Proportion(0, 0)) == "0/0 (no images)"
    assert "100%, 95% CI 72%–100%" in str(stats.Proportion(10, 10))


def test_auc_is_the_mann_whitney_probability_with_ties_counting_half():
    y = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.6, 0.2, 0.9, 0.4, 0.8]
    assert stats.auc(y, scores) == pytest.approx(roc_auc_score(y, scores)) == pytest.approx(8 / 9)
    tied = [0.5, 0.2, 0.3, 0.5, 0.9, 0.8]
    assert stats.auc(y, tied) == pytest.approx(roc_auc_score(y, tied))
    assert stats.auc([1, 1], [0.2, 0.3]) is None


def test_auc_bootstrap_is_seeded_and_contains_the_value():
    rng = np.random.default_rng(3)
    y = np.array([0] * 20 + [1] * 20)
    scores = np.concatenate([rng.normal(0, 1, 20), rng.normal(1, 1, 20)])
    first = stats.auc_interval(y, scores, seed=42)
    again = stats.auc_interval(y, scores, seed=42)
    other = stats.auc_interval(y, scores, seed=7)
    assert first == again and (first.low, first.high) != (other.low, other.high)
    assert first.low < first.value < first.high and first.value == pytest.approx(roc_auc_score(y, scores))
    assert "bootstrap" in first.method and "seed 42" in first.method and not first.note
    assert str(first) == f"{first.value:.2f} (95% CI {first.low:.2f}–{first.high:.2f})"
    assert stats.auc_interval([0, 0, 0], [0.1, 0.2, 0.3], seed=1) is None


def test_a_perfect_auc_on_ten_images_does_not_get_a_point_interval():
    """Every bootstrap redraw of perfectly ranked images gives 1.00; the kit must not report 1.00–1.00."""
    y = [0] * 5 + [1] * 5
    scores = [0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95]
    estimate = stats.auc_interval(y, scores, seed=42)
    assert estimate.value == 1.0 and estimate.high == 1.0
    assert 0.5 < estimate.low < 0.85  # wide: ten images cannot show a perfect model
    assert "Newcombe" in estimate.method and "cannot show" in estimate.note
    # More images ranked perfectly: a narrower, but still honest, interval.
    many = stats.auc_score_interval(1.0, 100, 100)
    assert estimate.low < many[0] < 1.0


def test_predictive_values_depend_on_prevalence():
    ppv, npv = stats.predictive_values(0.9, 0.9, 0.1)
    assert ppv == pytest.approx(0.5) and npv == pytest.approx(81 / 82)
    assert stats.predictive_values(0.9, 0.9, 0.5)[0] == pytest.approx(0.9)
    rare = stats.predictive_values(0.95, 0.95, 0.02)[0]
    assert rare < 0.3  # a rare class: most positive answers are false alarms
    assert np.isnan(stats.predictive_values(0.0, 1.0, 0.1)[0])  # the model never answers positive
    with pytest.raises(ValueError):
        stats.predictive_values(0.9, 0.9, 1.5)


def test_stats_imports_nothing_of_the_kit():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(stats.__file__).read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in modules if m and m.startswith("hello_dl")}
