"""The champion bootstrap's bounded resamples (figures.paired_bootstrap_mae, max_rows)."""

import numpy as np
import pandas as pd
import pytest

from pipeline import figures


def _errors(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(100_000, 400_000, n)
    champion = y * (1 + rng.normal(0, 0.08, n))
    candidate = y * (1 + rng.normal(0, 0.085, n))  # ~6 % worse MAE
    return y, candidate, champion


def test_bounded_resamples_change_nothing_below_the_bound():
    y, cand, champ = _errors(5_000)
    full = figures.paired_bootstrap_mae(y, cand, champ, 500, 0.95, seed=1)
    bounded = figures.paired_bootstrap_mae(y, cand, champ, 500, 0.95, seed=1, max_rows=5_000)
    assert (full.lower, full.upper, full.delta) == (bounded.lower, bounded.upper, bounded.delta)


def test_above_the_bound_the_change_is_on_every_row_and_the_interval_is_that_of_fewer_rows():
    y, cand, champ = _errors(200_000)
    full = figures.paired_bootstrap_mae(y, cand, champ, 300, 0.95, seed=1)
    bounded = figures.paired_bootstrap_mae(y, cand, champ, 300, 0.95, seed=1, max_rows=20_000)
    assert bounded.delta == full.delta
    width_full, width_bounded = full.upper - full.lower, bounded.upper - bounded.lower
    # sqrt(200k / 20k) ~ 3.2 times wider, give or take the bootstrap's own noise.
    assert 2.5 < width_bounded / width_full < 4.0, (width_full, width_bounded)
    # Still centred on the same change, and still sure the candidate is worse.
    assert bounded.lower < full.delta < bounded.upper and bounded.lower > 0


def test_a_point_mass_is_a_bin_of_its_own_in_the_one_feature_fit():
    # 0 spent exactly when the application was refused (AER's CreditCard): the zeros are a
    # quantile edge, and the rows just above zero are the other label; merged in one bin, the
    # leak would look weaker than it is.
    rng = np.random.default_rng(0)
    x = np.where(rng.random(2000) < 0.3, 0.0, rng.exponential(0.01, 2000))
    y = (x > 0).astype(float)
    frame = pd.DataFrame({"spent": x})
    (fit,) = figures.one_feature_fits(frame.iloc[:1500], frame.iloc[1500:], ["spent"], y[:1500], y[1500:])
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
