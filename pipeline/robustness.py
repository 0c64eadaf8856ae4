"""Perturbation specs for robustness gates: hypothesis strategies and how to apply them.

A spec is small and printable, so hypothesis's shrunk minimal example reads well in a
failure message; applying it to a batch of rows is vectorised, one predict per example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from pipeline.checks import INF, Finding

Holds = Callable[[Finding], bool]
Observe = Callable[[Finding], None]


@dataclass(frozen=True)
class Perturbation:
    """One robustness property: hypothesis draws `strategy`'s specs; `perturb(spec)` is the
    perturbed batch of rows; `judge(spec, rows, predict)` its finding, with `predict` the
    model's (or, when every example was predicted in one batch, this example's share of it)."""

    strategy: st.SearchStrategy
    perturb: Callable[[Any], pd.DataFrame]
    judge: Callable[[Any, pd.DataFrame, Callable[[pd.DataFrame], np.ndarray]], Any]


def judged_in_one_batch(
    predict: Callable[[pd.DataFrame], np.ndarray], drawn: list[tuple[Perturbation, Any, pd.DataFrame]]
) -> list | None:
    """The finding of every drawn example ((perturbation, spec, rows) each) from one predict of
    all their rows; None when they cannot share a batch (other columns or dtypes) or the
    predict raises."""
    frames = [rows for _, _, rows in drawn]
    if not frames or any(
        list(f.columns) != list(frames[0].columns) or not f.dtypes.equals(frames[0].dtypes) for f in frames
    ):
        return None
    try:
        p = np.asarray(predict(pd.concat(frames, ignore_index=True)), float)
    except Exception:
        return None
    ends = np.cumsum([len(f) for f in frames])

    def answered(share: np.ndarray) -> Callable[[pd.DataFrame], np.ndarray]:
        return lambda _rows: share  # this example's rows' share of the one predict

    return [pert.judge(spec, rows, answered(p[end - len(rows) : end])) for (pert, spec, rows), end in zip(drawn, ends)]


def worst(found: list[Finding]) -> Finding:
    """The worst example's finding (the highest figure), with every reported figure's worst beside it."""
    top = max(found, key=lambda f: f.value)
    reported: dict[str, float] = {}
    for f in found:
        for k, v in f.reported.items():
            reported[k] = max(reported.get(k, -INF), float(v))
    return replace(top, detail=f"worst of {len(found)} examples; {top.detail}", reported=reported)


def explore(holds: Holds, *properties: Callable[[Observe], Callable[[], None]]) -> Finding:
    """Run hypothesis properties, each made from `observe` (which it calls with every example's
    finding; a finding that does not hold fails the example, so hypothesis shrinks it). The
    deciding finding: the minimal failing example's when one fails (hypothesis replays it
    last), else the worst example's. An error that is not a failed example propagates."""
    observed: list[Finding] = []

    def observe(finding: Finding) -> None:
        observed.append(finding)
        if not holds(finding):
            raise AssertionError(finding.detail)

    try:
        for make in properties:
            make(observe)()
    except Exception:
        if observed and not holds(observed[-1]):
            return replace(observed[-1], detail=f"minimal failing example; {observed[-1].detail}")
        raise
    return worst(observed)


def explore_batched(
    predict: Callable[[pd.DataFrame], np.ndarray], holds: Holds, *perturbations: Perturbation
) -> Finding:
    """Hypothesis draws every example of each perturbation; all of them are predicted in one
    batch and judged. When one fails, or the batch predict raises, they are explored again one
    predict per example (explore), so that hypothesis finds the failure and shrinks it to a
    minimal example for the message. A batch is only formed of examples with the same columns
    and dtypes (else: one predict per example)."""
    drawn: list[tuple[Perturbation, Any, pd.DataFrame]] = []
    checking = False

    def prop(pert: Perturbation) -> Callable[[Observe], Callable[[], None]]:
        def make(observe: Observe) -> Callable[[], None]:
            @given(spec=pert.strategy)
            def example(spec: Any) -> None:
                rows = pert.perturb(spec)
                if checking:
                    observe(pert.judge(spec, rows, predict))
                else:
                    drawn.append((pert, spec, rows))

            return example

        return make

    props = [prop(pert) for pert in perturbations]
    for make in props:  # draws only: nothing is judged, so nothing fails or shrinks
        make(lambda _finding: None)()
    findings = judged_in_one_batch(predict, drawn)
    if findings is not None and all(holds(f) for f in findings):
        return worst(findings)
    checking = True
    found = explore(holds, *props)
    if findings is not None and holds(found):  # hypothesis drew other examples this time: the batch's failure stands
        return max(findings, key=lambda f: f.value)
    return found


@dataclass(frozen=True)
class RowSample:
    seed: int
    rows: int

    def positions(self, n_rows: int) -> np.ndarray:
        """The sampled rows' positions among n_rows, in order."""
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n_rows, size=min(self.rows, n_rows), replace=False))

    def take(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.iloc[self.positions(len(frame))]


def _is_text(dtype) -> bool:
    return pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)


def _assign(out: pd.DataFrame, col: str, values: np.ndarray) -> None:
    """`values` into column `col` in the column's own dtype: a perturbation changes values, not
    dtypes (given an object array of strings, pandas 3 would make the column its str dtype, and
    examples that perturb other columns could not share one batch)."""
    dtype = out[col].dtype
    out[col] = pd.Series(values, index=out.index, dtype=dtype) if _is_text(dtype) else values


def resolution(values: pd.Series) -> float:
    """A column's resolution: the median step between its distinct values (0 with fewer than
    two). What a measurement error of the column moves a value by: 1 for a count or a year,
    0.01 for a price in cents, 1e-6 degree for coordinates written to six decimals."""
    distinct = np.unique(values.dropna().to_numpy(float))
    return float(np.median(np.diff(distinct))) if len(distinct) > 1 else 0.0


def noise_scale(train: pd.DataFrame, columns: list[str], cfg: Any) -> tuple[pd.Series, str]:
    """(each column's noise sd, how it was chosen) for the noise gate, from the training rows
    and the robustness settings (`cfg`): a declared sd (noise_sd) where there is one, else
    the smaller of noise_steps x the column's resolution and noise_relative_sd x its
    training sd (noise_scale: resolution), or the latter alone (noise_scale: spread).

    Noise scaled by spread alone moved coordinates by kilometres (1 % of a city's spread),
    where a measurement error is a property of the column's resolution; resolution alone
    moves a count by a large share of its range (half a car in a garage). A measurement
    error is within the column's resolution and a small share of its spread."""
    spread = train[columns].std().fillna(0.0) * cfg.noise_relative_sd
    if cfg.noise_scale == "spread":
        sd = spread
        how = f"{cfg.noise_relative_sd:g} x each column's spread"
    else:
        steps = pd.Series({c: cfg.noise_steps * resolution(train[c]) for c in columns}, dtype=float)
        sd = np.minimum(steps, spread)
        how = f"min({cfg.noise_steps:g} x resolution, {cfg.noise_relative_sd:g} x spread) per column"
    declared = {c: v for c, v in cfg.noise_sd.items() if c in sd.index}
    for c, v in declared.items():
        sd[c] = v
    return sd, how + (f" ({len(declared)} declared in noise_sd)" if declared else "")


@dataclass(frozen=True)
class NoiseSpec:
    sample: RowSample
    columns: tuple[str, ...]
    how: str  # how each column's noise sd was chosen (noise_scale), for the message

    def apply(self, frame: pd.DataFrame, sd: pd.Series) -> pd.DataFrame:
        """Gaussian noise of sd[col] added to each of the columns; missing values stay missing."""
        out = frame.copy()
        rng = np.random.default_rng(self.sample.seed + 1)
        for col in self.columns:
            noise = rng.normal(0.0, float(sd[col]), size=len(out))
            out[col] = out[col] + noise
        return out


@dataclass(frozen=True)
class MaskSpec:
    sample: RowSample
    columns: tuple[str, ...]
    share: float  # share of the sampled rows whose chosen columns go missing

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        rng = np.random.default_rng(self.sample.seed + 2)
        hit = rng.random(len(out)) < self.share
        hit[0] = True  # at least one row is hit whatever the share
        for col in self.columns:
            text = _is_text(out[col].dtype)
            values = out[col].to_numpy(copy=True).astype(object if text else float)
            values[hit] = None if text else np.nan
            _assign(out, col, values)
        return out


@dataclass(frozen=True)
class UnseenSpec:
    sample: RowSample
    columns: tuple[str, ...]

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for i, col in enumerate(self.columns):
            _assign(out, col, np.array([f"__unseen_{i}_{j % 3}__" for j in range(len(out))], dtype=object))
        return out


@dataclass(frozen=True)
class ShiftSpec:
    """Move one feature by `step` of its own value (or spread, for values near zero)."""

    sample: RowSample
    feature: str
    step: float

    def apply(self, frame: pd.DataFrame, scale: float, sign: int) -> pd.DataFrame:
        out = frame.copy()
        x = out[self.feature].to_numpy(float)
        # Relative to the value itself where there is one; missing values stay missing.
        delta = np.where(np.abs(x) > 0, np.abs(x) * self.step, scale * self.step)
        out[self.feature] = x + sign * delta
        return out


def row_samples(rows: int) -> st.SearchStrategy[RowSample]:
    return st.builds(RowSample, seed=st.integers(0, 2**31 - 1), rows=st.just(rows))


def subsets(columns: list[str]) -> st.SearchStrategy[tuple[str, ...]]:
    if not columns:
        raise ValueError("subsets: columns must not be empty")
    return st.lists(st.sampled_from(columns), min_size=1, max_size=len(columns), unique=True).map(
        lambda c: tuple(sorted(c))
    )


def mask_specs(columns: list[str], rows: int) -> st.SearchStrategy[MaskSpec]:
    return st.builds(MaskSpec, sample=row_samples(rows), columns=subsets(columns), share=st.floats(0.05, 1.0))


def unseen_specs(columns: list[str], rows: int) -> st.SearchStrategy[UnseenSpec]:
    return st.builds(UnseenSpec, sample=row_samples(rows), columns=subsets(columns))


def shift_specs(feature: str, rows: int, max_step: float) -> st.SearchStrategy[ShiftSpec]:
    return st.builds(
        ShiftSpec, sample=row_samples(rows), feature=st.just(feature), step=st.floats(max_step / 10, max_step)
    )


WIDER_NUMERIC = ("float64", "Float64")
WIDER_CATEGORICAL = ("object", "string", "category")


@dataclass(frozen=True)
class DtypeSpec:
    numeric: str
    categorical: str

    def apply(self, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
        out = frame.copy()
        for col in numeric:
            out[col] = out[col].astype(self.numeric)
        for col in categorical:
            out[col] = out[col].astype(self.categorical)
        return out


def dtype_specs() -> st.SearchStrategy[DtypeSpec]:
    return st.builds(DtypeSpec, numeric=st.sampled_from(WIDER_NUMERIC), categorical=st.sampled_from(WIDER_CATEGORICAL))
