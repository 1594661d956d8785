"""Agreement between reviewers (conversations/review/agreement.py): Cohen's kappa and
Krippendorff's interval alpha against figures worked out by hand below, and against published
examples."""

from __future__ import annotations

import pytest

from conversations.review.agreement import (
    NO_UNITS,
    NO_VARIATION,
    Agreement,
    cohen_kappa,
    krippendorff_alpha_interval,
)

# Cohen's kappa -------------------------------------------------------------------------------


def test_it_computes_kappa_for_booleans_by_hand():
    # 6 units; alike on 4: p_o = 4/6 = 2/3.
    # First rater: 3 True, 3 False; second: 3 True, 3 False.
    # p_e = (3*3 + 3*3) / 6^2 = 18/36 = 1/2.
    # kappa = (2/3 - 1/2) / (1 - 1/2) = (1/6) / (1/2) = 1/3.
    pairs = [(True, True), (True, True), (True, False), (False, False), (False, False),
             (False, True)]
    result = cohen_kappa(pairs)
    assert result.value == pytest.approx(1 / 3)
    assert (result.units, result.reason, result.defined) == (6, "", True)


def test_it_computes_kappa_for_three_categories_by_hand():
    # 5 units; alike on 3 (good/good, ok/ok, bad/bad): p_o = 3/5 = 0.6.
    # First rater: good 2, ok 1, bad 2; second: good 1, ok 3, bad 1.
    # p_e = (2*1 + 1*3 + 2*1) / 5^2 = 7/25 = 0.28.
    # kappa = (0.6 - 0.28) / (1 - 0.28) = 0.32 / 0.72 = 4/9.
    pairs = [("good", "good"), ("good", "ok"), ("ok", "ok"), ("bad", "bad"), ("bad", "ok")]
    assert cohen_kappa(pairs) == Agreement(pytest.approx(4 / 9), 5)


def test_it_matches_the_textbook_kappa_example():
    # The usual worked example (e.g. Wikipedia's "Cohen's kappa"): 50 items, yes/yes 20,
    # yes/no 5, no/yes 10, no/no 15. p_o = 35/50 = 0.7; first rater yes 25/50, second yes
    # 30/50: p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4.
    pairs = ([("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10
             + [("no", "no")] * 15)
    result = cohen_kappa(pairs)
    assert result.value == pytest.approx(0.4)
    assert result.units == 50


def test_it_gives_kappa_one_for_perfect_and_minus_one_for_systematic_disagreement():
    assert cohen_kappa([("a", "a"), ("b", "b")]).value == pytest.approx(1.0)
    # p_o = 0; p_e = (1*1 + 1*1) / 4 = 1/2; kappa = (0 - 1/2) / (1/2) = -1.
    assert cohen_kappa([("a", "b"), ("b", "a")]).value == pytest.approx(-1.0)


def test_it_says_why_kappa_is_undefined():
    assert cohen_kappa([]) == Agreement(None, 0, NO_UNITS)
    # Everybody always said "yes": p_e = 1, the ratio is 0/0.
    result = cohen_kappa([(True, True)] * 4)
    assert result == Agreement(None, 4, NO_VARIATION)
    assert not result.defined


# Krippendorff's alpha, interval ----------------------------------------------------------------


def test_it_computes_alpha_by_hand_dropping_single_ratings():
    # Units [1, 2], [3, 3], [-, 5]: the last has one rating and is dropped.
    # Pairable ratings 1, 2, 3, 3: n = 4, sum 9, sum of squares 23.
    # Sum over ordered pairs i != j of (v_i - v_j)^2 = 2 * (4 * 23 - 9^2) = 22;
    # D_e = 22 / (4 * 3) = 11/6.
    # Unit [1, 2]: pairs (1,2) and (2,1), 1 + 1 = 2, over m_u - 1 = 1: 2. Unit [3, 3]: 0.
    # D_o = (2 + 0) / 4 = 1/2.  alpha = 1 - (1/2) / (11/6) = 1 - 3/11 = 8/11.
    result = krippendorff_alpha_interval([[1, 2], [3, 3], [None, 5]])
    assert result.value == pytest.approx(8 / 11)
    assert result.units == 2


def test_it_computes_alpha_with_three_raters_by_hand():
    # Units [1, 2, 3] and [4, 4, -]. Pairable: 1, 2, 3, 4, 4: n = 5, sum 14, squares 46.
    # D_e = 2 * (5 * 46 - 14^2) / (5 * 4) = 68 / 20 = 3.4.
    # Unit [1, 2, 3]: 2 * (3 * 14 - 6^2) = 12 over m_u - 1 = 2: 6. Unit [4, 4]: 0.
    # D_o = 6 / 5 = 1.2.  alpha = 1 - 1.2 / 3.4 = 1 - 6/17 = 11/17.
    result = krippendorff_alpha_interval([[1, 2, 3], [4, 4, None]])
    assert result.value == pytest.approx(11 / 17)
    assert result.units == 2


def test_it_matches_krippendorffs_four_coder_example():
    # Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011), section C: four coders,
    # twelve units, missing values; unit 12 has one value and is dropped. Published: interval
    # alpha = 0.849.
    n = None
    coder_a = [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n]
    coder_b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3]
    coder_c = [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n]
    coder_d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]
    result = krippendorff_alpha_interval(zip(coder_a, coder_b, coder_c, coder_d, strict=True))
    assert round(result.value, 3) == 0.849
    assert result.units == 11


def test_it_ignores_which_rater_gave_which_value():
    forward = krippendorff_alpha_interval([[1, 2], [3, 3], [4, 5, 5]])
    backward = krippendorff_alpha_interval([[2, 1], [3, 3], [5, 5, 4]])
    assert forward.value == pytest.approx(backward.value)


def test_it_gives_alpha_one_for_perfect_agreement_and_below_zero_below_chance():
    assert krippendorff_alpha_interval([[1, 1], [5, 5]]).value == pytest.approx(1.0)
    # [1, 5] and [5, 1]: D_o = (16+16 + 16+16) / 4 = 16; pooled 1,5,5,1: sum 12, squares 52,
    # 2 * (4*52 - 144) / 12 = 128/12 = 32/3; alpha = 1 - 16 / (32/3) = -1/2.
    assert krippendorff_alpha_interval([[1, 5], [5, 1]]).value == pytest.approx(-0.5)


def test_it_says_why_alpha_is_undefined():
    assert krippendorff_alpha_interval([]) == Agreement(None, 0, NO_UNITS)
    assert krippendorff_alpha_interval([[3], [None, 4], [None, None]]) == Agreement(
        None, 0, NO_UNITS)
    # Every rating the same: D_e = 0.
    assert krippendorff_alpha_interval([[4, 4], [4.0, 4, None]]) == Agreement(
        None, 2, NO_VARIATION)
