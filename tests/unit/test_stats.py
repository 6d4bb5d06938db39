"""kdlab.stats against scipy and hand-computed values."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kdlab.errors import ParameterError
from kdlab.stats import (
    _t_quantile_without_scipy,
    episodes_ci,
    mean_ci,
    over_seeds,
    paired_difference,
    summary_table,
    t_quantile,
)

ACCURACIES = [91.0, 92.1, 90.5, 91.6, 91.3]


def test_t_quantile_matches_the_table_value():
    assert t_quantile(0.95, 4) == pytest.approx(2.776445, abs=1e-6)
    assert _t_quantile_without_scipy(0.95, 4) == pytest.approx(2.776445, abs=1e-6)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 30, 200, 999, 4000])
@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99])
def test_t_quantile_without_scipy_matches_scipy(df, level):
    expected = scipy_stats.t.ppf((1 + level) / 2, df)
    assert _t_quantile_without_scipy(level, df) == pytest.approx(expected, rel=1e-7)


def test_mean_ci_matches_scipy_t_interval():
    ci = mean_ci(ACCURACIES, level=0.9)
    low, high = scipy_stats.t.interval(0.9, len(ACCURACIES) - 1, loc=np.mean(ACCURACIES),
                                       scale=scipy_stats.sem(ACCURACIES))
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)
    assert ci.n == 5 and ci.std == pytest.approx(np.std(ACCURACIES, ddof=1))


def test_mean_ci_prints_mean_plus_minus_half_width():
    ci = mean_ci(ACCURACIES)  # mean 91.3, std sqrt(1.46 / 4), half width 2.776445 * std / sqrt(5)
    assert ci.half_width == pytest.approx(2.776445 * math.sqrt(1.46 / 4) / math.sqrt(5), rel=1e-6)
    assert str(ci) == "91.3 ± 0.8"
    assert f"{ci:.2f}" == "91.30 ± 0.75"


def test_one_seed_has_no_interval_and_says_so():
    ci = mean_ci([0.8])
    assert ci.mean == 0.8 and math.isnan(ci.half_width) and math.isnan(ci.low)
    assert "n=1" in str(ci)
    assert "n=1" in str(paired_difference([0.8], [0.7]))


def test_paired_difference_matches_scipy_ttest_rel():
    a = [91.2, 92.0, 90.1, 93.3, 91.0]
    b = [90.0, 90.3, 90.6, 91.0, 90.1]
    diff = paired_difference(a, b)
    expected = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (diff.low, diff.high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert diff.mean == pytest.approx(1.12)
    assert diff.std == pytest.approx(np.std(np.subtract(a, b), ddof=1))
    assert (diff.wins, diff.ties, diff.losses, diff.n) == (4, 0, 1, 5)
    assert str(diff) == "+1.12 [95% CI -0.18, +2.42] (wins 4/5)"


def test_paired_difference_counts_ties_and_rejects_unequal_lengths():
    diff = paired_difference([1, 2, 3], [1, 3, 2])
    assert (diff.wins, diff.ties, diff.losses) == (1, 1, 1)
    with pytest.raises(ParameterError, match="one per shared seed"):
        paired_difference([1, 2, 3], [1, 2])


def test_bad_values_give_one_clear_message():
    with pytest.raises(ParameterError, match="non-empty"):
        mean_ci([])
    with pytest.raises(ParameterError, match="sequence of numbers"):
        mean_ci(["high", "low"])
    with pytest.raises(ParameterError, match="level"):
        mean_ci(ACCURACIES, level=95)


def test_episodes_ci_is_mamls_normal_interval_with_population_std():
    accuracies = [0.6, 0.8, 0.7, 0.9]  # mean 0.75, population std sqrt(0.0125)
    ci = episodes_ci(accuracies)
    assert ci.mean == pytest.approx(0.75)
    assert ci.half_width == pytest.approx(1.96 * math.sqrt(0.0125) / 2)


def test_summary_table_rows_and_markdown():
    table = summary_table({"student": [80.0, 81.0, 82.0], "kd": [81.0, 83.0, 82.5]}, baseline="student")
    student, kd = table
    assert student.versus_baseline is None
    assert kd.versus_baseline.mean == pytest.approx(3.5 / 3)
    assert kd.interval.mean == pytest.approx(82.1666667)
    markdown = table.to_markdown().splitlines()
    assert markdown[0].startswith("| method | n |") and "difference vs student" in markdown[0]
    assert markdown[2] == f"| student | 3 | {mean_ci([80.0, 81.0, 82.0])} | (baseline) |"
    assert markdown[3].startswith("| kd | 3 |") and "(wins 3/3)" in markdown[3]
    with pytest.raises(ParameterError, match="baseline"):
        summary_table({"kd": [1.0]}, baseline="teacher")


def test_over_seeds_collects_numbers_and_dicts(capsys):
    assert over_seeds(lambda seed: seed * 10, [1, 2, 3], progress=False) == [10.0, 20.0, 30.0]
    by_name = over_seeds(lambda seed: {"acc": np.float64(seed), "loss": -seed}, 2)
    assert by_name == {"acc": [0.0, 1.0], "loss": [0.0, -1.0]}
    assert "seed 1 (2/2): acc=1, loss=-1" in capsys.readouterr().out


def test_over_seeds_rejects_results_that_change_shape():
    with pytest.raises(ParameterError, match="like the result for the first seed"):
        over_seeds(lambda seed: {"acc": 1.0} if seed == 0 else 1.0, 2, progress=False)
    with pytest.raises(ParameterError, match="a number, or a dict of numbers"):
        over_seeds(lambda seed: "high", 1, progress=False)


def test_verdict_follows_the_interval():
    from kdlab.stats import paired_difference, verdict

    assert "A beats B" in verdict(paired_difference([2.0, 3.0, 2.5], [1.0, 1.5, 1.2]), "A", "B")
    assert "A is worse than B" in verdict(paired_difference([1.0, 1.5, 1.2], [2.0, 3.0, 2.5]), "A", "B")
    assert "no detectable difference" in verdict(paired_difference([2.0, 0.0, 1.5], [1.0, 1.0, 1.0]), "A", "B")
