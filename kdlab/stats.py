"""Claims from several seeds: per-seed runs, confidence intervals and paired differences.

One run proves nothing: two methods trained from the same seed share their data order and
initialisation, so the kit compares them seed by seed (a paired difference) and reports a Student-t
interval. Few-shot accuracies over many test episodes use MAML's interval instead (`episodes_ci`).

    >>> accs = over_seeds(lambda seed: train_and_test(seed), seeds=range(5))
    >>> print(mean_ci(accs))                                # 91.3 ± 0.8
    >>> print(paired_difference(kd_accs, baseline_accs))    # +1.20 [95% CI -0.30, +2.70] (wins 4/5)
"""
import math
import numbers
import statistics
import time
from dataclasses import dataclass

from .errors import ParameterError
from .parallel import imap_in_workers


# --------------------------------------------------------------------------- t quantile


def t_quantile(level, df):
    """The two-sided Student-t critical value: P(|T| <= t) = level for T with `df` degrees of freedom."""
    if not 0 < level < 1:
        raise ParameterError("level", level, "a number strictly between 0 and 1, such as 0.95")
    if df < 1:
        return math.nan
    try:
        from scipy.stats import t as student_t
    except ImportError:
        return _t_quantile_without_scipy(level, df)
    return float(student_t.ppf((1 + level) / 2, df))


def _t_quantile_without_scipy(level, df):
    """Invert the exact Student-t CDF for integer `df` by bisection (Abramowitz & Stegun 26.7.3-4)."""
    if df > 1000:  # the series below gets long; Cornish-Fisher is accurate to 1e-7 here
        z = statistics.NormalDist().inv_cdf((1 + level) / 2)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    low, high = 0.0, math.pi / 2  # bisection on theta = atan(t / sqrt(df)); A(theta) increases
    for _ in range(100):
        theta = (low + high) / 2
        if _t_central_probability(theta, int(df)) < level:
            low = theta
        else:
            high = theta
    return math.sqrt(df) * math.tan((low + high) / 2)


def _t_central_probability(theta, df):
    """A(t | df) = P(|T| <= t) written with theta = atan(t / sqrt(df)), for integer df."""
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(2, df, 2):
            term *= cos2 * (k - 1) / k
            total += term
        return sin * total
    if df == 1:
        return 2 * theta / math.pi
    term = math.cos(theta)
    total = term
    for k in range(3, df, 2):
        term *= cos2 * (k - 1) / k
        total += term
    return 2 / math.pi * (theta + sin * total)


# --------------------------------------------------------------------------- formatting


def _decimals_for(half_width):
    """Decimals that show the interval's first significant digit (two when it starts with 1 or 2)."""
    if not math.isfinite(half_width) or half_width <= 0:
        return 2
    exponent = math.floor(math.log10(half_width))
    leading = half_width / 10**exponent
    return max(0, -exponent + (1 if leading < 3 else 0))


def _check_values(values, name="values"):
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ParameterError(name, values, "a sequence of numbers, one per seed") from None
    if not values:
        raise ParameterError(name, values, "a non-empty sequence of numbers, one per seed")
    return values


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """A mean with a symmetric confidence interval; `str()` gives "91.3 ± 0.8"."""

    mean: float
    half_width: float
    n: int
    level: float = 0.95
    std: float = math.nan

    @property
    def low(self):
        return self.mean - self.half_width

    @property
    def high(self):
        return self.mean + self.half_width

    def __format__(self, spec):
        """`f"{ci:.2f}"` formats mean and half width with that spec; an empty spec picks decimals."""
        if not math.isfinite(self.half_width):
            mean = format(self.mean, spec or ".4g")
            return f"{mean} (n={self.n}: no interval)" if self.n == 1 else f"{mean} ± nan"
        spec = spec or f".{_decimals_for(self.half_width)}f"
        return f"{format(self.mean, spec)} ± {format(self.half_width, spec)}"

    def __str__(self):
        return format(self, "")

    def as_dict(self):
        """Plain numbers, for `kdlab.results.record` and JSON."""
        return {"mean": self.mean, "half_width": self.half_width, "low": self.low, "high": self.high,
                "n": self.n, "level": self.level, "std": self.std}


def mean_ci(values, level=0.95):
    """Mean and Student-t confidence interval of per-seed values (one seed: nan half width)."""
    values = _check_values(values)
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, math.nan, 1, level)
    std = statistics.stdev(values)
    return Interval(mean, t_quantile(level, n - 1) * std / math.sqrt(n), n, level, std)


def episodes_ci(accuracies):
    """MAML's few-shot report: mean ± 1.96 * std / sqrt(n) over test episodes.

    As in MAML's evaluation code the std is the population std (numpy's default, ddof=0) and the
    normal quantile 1.96 is used, which is fair for the hundreds of episodes it is meant for.
    """
    values = _check_values(accuracies, "accuracies")
    n = len(values)
    std = statistics.pstdev(values)
    half_width = 1.96 * std / math.sqrt(n) if n > 1 else math.nan
    return Interval(statistics.fmean(values), half_width, n, 0.95, std)


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences a - b with their t interval and how often a beat b."""

    differences: tuple
    interval: Interval
    wins: int
    ties: int
    losses: int

    mean = property(lambda self: self.interval.mean)
    half_width = property(lambda self: self.interval.half_width)
    low = property(lambda self: self.interval.low)
    high = property(lambda self: self.interval.high)
    std = property(lambda self: self.interval.std)
    n = property(lambda self: self.interval.n)
    level = property(lambda self: self.interval.level)

    def __format__(self, spec):
        wins = f"(wins {self.wins}/{self.n})"
        if self.n == 1:
            return f"{format(self.mean, '+' + (spec or '.2f'))} (n=1: no interval) {wins}"
        if not spec:  # one decimal more than a mean gets: whether the interval crosses 0 is the point
            spec = f".{_decimals_for(self.half_width) + 1}f" if self.half_width > 0 else ".2f"
        plus = "+" + spec
        percent = f"{100 * self.level:g}%"
        return (f"{format(self.mean, plus)} [{percent} CI {format(self.low, plus)}, "
                f"{format(self.high, plus)}] {wins}")

    def __str__(self):
        return format(self, "")

    def as_dict(self):
        """Plain numbers, for `kdlab.results.record` and JSON."""
        return {**self.interval.as_dict(), "wins": self.wins, "ties": self.ties, "losses": self.losses}


def paired_difference(a, b, level=0.95):
    """Compare two methods run on the same seeds: mean of a - b, its t interval, wins/ties/losses."""
    a, b = _check_values(a, "a"), _check_values(b, "b")
    if len(a) != len(b):
        raise ParameterError("b", f"{len(b)} values", f"as many values as a ({len(a)}), one per shared seed")
    differences = tuple(x - y for x, y in zip(a, b))
    return PairedDifference(
        differences=differences,
        interval=mean_ci(differences, level),
        wins=sum(d > 0 for d in differences),
        ties=sum(d == 0 for d in differences),
        losses=sum(d < 0 for d in differences),
    )


# --------------------------------------------------------------------------- several seeds, several methods


def over_seeds(fn, seeds, *, progress=True, workers=1):
    """Run `fn(seed)` for each seed; return the list of results, or a dict of lists if fn returns dicts.

    `seeds` is an iterable of ints, or an int n meaning seeds 0..n-1. Every call must return the same
    kind of thing: a number, or a dict with the same keys of numbers. `workers` > 1 runs the seeds in that
    many processes side by side (`kdlab.parallel`; `fn` a function of a module or a `functools.partial` of
    one): the same results, in the seeds' order.
    """
    seeds = list(range(seeds)) if isinstance(seeds, numbers.Integral) else list(seeds)
    if not seeds:
        raise ParameterError("seeds", seeds, "at least one seed, e.g. range(5)")
    collected = None
    started = time.perf_counter()
    for index, (seed, value) in enumerate(zip(seeds, imap_in_workers(fn, seeds, workers)), start=1):
        value = _as_seed_result(value, seed)
        if collected is None:
            collected = {key: [] for key in value} if isinstance(value, dict) else []
        elif isinstance(value, dict) != isinstance(collected, dict) or (
                isinstance(value, dict) and set(value) != set(collected)):
            first = f"a dict with keys {sorted(collected)}" if isinstance(collected, dict) else "a number"
            raise ParameterError(f"fn({seed})", value, f"{first}, like the result for the first seed")
        if isinstance(value, dict):
            for key, number in value.items():
                collected[key].append(number)
            shown = ", ".join(f"{key}={number:.4g}" for key, number in value.items())
        else:
            collected.append(value)
            shown = f"{value:.4g}"
        if progress:
            print(f"seed {seed} ({index}/{len(seeds)}): {shown}  [{time.perf_counter() - started:.1f} s]",
                  flush=True)
        started = time.perf_counter()
    return collected


def _as_seed_result(value, seed):
    """A float, or a dict of floats; numpy and torch scalars are unwrapped."""
    if isinstance(value, dict):
        return {key: _as_number(number, f"fn({seed})[{key!r}]") for key, number in value.items()}
    return _as_number(value, f"fn({seed})")


def _as_number(value, name):
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(name, value, "a number, or a dict of numbers")
    return float(value)


@dataclass(frozen=True)
class SummaryRow:
    """One method in a summary table; `versus_baseline` is None for the baseline itself."""

    method: str
    interval: Interval
    versus_baseline: "PairedDifference | None"


class SummaryTable(list):
    """Rows of `SummaryRow`; shows itself as a Markdown table in a notebook."""

    def __init__(self, rows, baseline, level):
        super().__init__(rows)
        self.baseline, self.level = baseline, level

    def to_markdown(self):
        percent = f"{100 * self.level:g}%"
        lines = [f"| method | n | mean ± {percent} CI | difference vs {self.baseline} [{percent} CI] (wins) |",
                 "|---|---:|---:|---:|"]
        for row in self:
            versus = "(baseline)" if row.versus_baseline is None else str(row.versus_baseline)
            lines.append(f"| {row.method} | {row.interval.n} | {row.interval} | {versus} |")
        return "\n".join(lines)

    __str__ = to_markdown

    def _repr_markdown_(self):
        return self.to_markdown()


def summary_table(values_by_method, baseline=None, level=0.95):
    """One row per method: mean ± CI, and the paired difference against `baseline` (default: first).

    `values_by_method` maps a method name to its per-seed values; every method must use the same
    seeds in the same order, since differences are taken seed by seed.
    """
    if not isinstance(values_by_method, dict) or not values_by_method:
        raise ParameterError("values_by_method", values_by_method, "a non-empty dict {method: per-seed values}")
    baseline = next(iter(values_by_method)) if baseline is None else baseline
    if baseline not in values_by_method:
        raise ParameterError("baseline", baseline, f"one of {list(values_by_method)}")
    rows = []
    for method, values in values_by_method.items():
        versus = None if method == baseline else paired_difference(values, values_by_method[baseline], level)
        rows.append(SummaryRow(str(method), mean_ci(values, level), versus))
    return SummaryTable(rows, baseline, level)


def verdict(diff, a, b):
    """One sentence on a paired difference a - b over seeds: which way its 95 % interval points."""
    if diff.n < 2 or not math.isfinite(diff.half_width):
        return f"{a} - {b}: {diff} (too few seeds for an interval, no claim)"
    if diff.low > 0:
        return f"{a} beats {b}: {diff}; the interval excludes zero"
    if diff.high < 0:
        return f"{a} is worse than {b}: {diff}; the interval excludes zero"
    return f"no detectable difference between {a} and {b}: {diff}; the interval includes zero"
