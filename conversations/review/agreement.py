"""Agreement between reviewers: Cohen's kappa (nominal values, two ratings per unit) and
Krippendorff's alpha (interval values, any number of ratings per unit, missing ones allowed).

Pure functions over plain values (no Django), so the statistics page (stats.py) and the tests
feed them the same lists. A unit is one scored target (a reply or a conversation) for one score
config; a rating is one reviewer's value for it.

Both coefficients are 1 for perfect agreement, 0 for agreement no better than chance, and
negative below chance. Each is undefined in two cases, returned as `value=None` with a
`reason`:
- NO_UNITS: no unit has the ratings the coefficient needs (two for kappa, two or more for
  alpha);
- NO_VARIATION: every rating is the same value, so chance agreement is already perfect and the
  ratio is 0/0 (reviewers who always answer "yes" agree, but say nothing about reliability).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

NO_UNITS = "no_units"
NO_VARIATION = "no_variation"


@dataclass(frozen=True)
class Agreement:
    value: float | None  # None: undefined, see `reason`
    units: int  # units the figure rests on
    reason: str = ""  # "" when defined; NO_UNITS or NO_VARIATION otherwise

    @property
    def defined(self) -> bool:
        return self.value is not None


def cohen_kappa(pairs: Iterable[tuple[Hashable, Hashable]]) -> Agreement:
    """Cohen's kappa for two raters on nominal data: `pairs` holds (first rating, second
    rating) per unit.

    kappa = (p_o - p_e) / (1 - p_e), with p_o the share of units rated alike and p_e the chance
    agreement, sum over categories of p_first(c) * p_second(c).
    """
    pairs = list(pairs)
    n = len(pairs)
    if not n:
        return Agreement(None, 0, NO_UNITS)
    observed = sum(1 for a, b in pairs if a == b) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    if expected == 1:
        return Agreement(None, n, NO_VARIATION)
    return Agreement((observed - expected) / (1 - expected), n)


def _squared_differences(values: Sequence[float]) -> float:
    """Sum of (v_i - v_j)^2 over the ordered pairs i != j: 2 * (m * sum v^2 - (sum v)^2)."""
    total = sum(values)
    return 2 * (len(values) * sum(v * v for v in values) - total * total)


def krippendorff_alpha_interval(units: Iterable[Sequence[float | None]]) -> Agreement:
    """Krippendorff's alpha for interval data: each unit is the list of its ratings (None for a
    rater who did not rate it). Units with fewer than two ratings are dropped (they cannot be
    paired).

    alpha = 1 - D_o / D_e, with n the pairable ratings, m_u those of unit u, and
    D_o = 1/n * sum_u [ sum_{i != j in u} (v_i - v_j)^2 / (m_u - 1) ],
    D_e = 1/(n (n - 1)) * sum_{i != j over all n ratings} (v_i - v_j)^2.
    """
    kept = []
    for unit in units:
        values = [float(v) for v in unit if v is not None]
        if len(values) >= 2:
            kept.append(values)
    if not kept:
        return Agreement(None, 0, NO_UNITS)
    pooled = [v for values in kept for v in values]
    n = len(pooled)
    expected = _squared_differences(pooled) / (n * (n - 1))
    # Differences of floats: a spread this small is rounding, not variation.
    if expected <= 1e-12 * max(1.0, max(abs(v) for v in pooled)) ** 2:
        return Agreement(None, len(kept), NO_VARIATION)
    observed = sum(_squared_differences(values) / (len(values) - 1) for values in kept) / n
    return Agreement(1 - observed / expected, len(kept))
