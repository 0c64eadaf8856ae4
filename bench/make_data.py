"""Evaluation sets at scale: data/raw/ames.csv resampled with replacement, small noise added.

    python bench/make_data.py                     # 10k, 100k and 1M rows
    python bench/make_data.py --rows 10000 --seed 3

Writes bench/data/ames_<rows>.csv (git-ignored, never committed). Numeric columns that are
measurements (areas, frontage, coordinates) and the target get small noise so that
resampled rows stay distinct (the data contract refuses duplicate rows) and stay inside
the contract's ranges; counts, years and months are left as they are. The file is
written in chunks, so memory stays bounded at any row count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "raw" / "ames.csv"
OUT_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_ROWS = (10_000, 100_000, 1_000_000)

# Relative noise (sd as a share of the value) for measurements; a zero stays zero, so a
# house without a pool or a porch keeps none. Values are rounded to one decimal.
RELATIVE = {
    "Lot_Frontage": 0.02,
    "Lot_Area": 0.02,
    "Mas_Vnr_Area": 0.02,
    "BsmtFin_SF_2": 0.02,
    "Bsmt_Unf_SF": 0.02,
    "Total_Bsmt_SF": 0.02,
    "First_Flr_SF": 0.02,
    "Second_Flr_SF": 0.02,
    "Gr_Liv_Area": 0.02,
    "Garage_Area": 0.02,
    "Wood_Deck_SF": 0.02,
    "Open_Porch_SF": 0.02,
    "Enclosed_Porch": 0.02,
    "Three_season_porch": 0.02,
    "Screen_Porch": 0.02,
}
TARGET, TARGET_NOISE = "Sale_Price", 0.02  # relative, rounded to whole dollars
# Absolute noise in degrees (~1e-4 degrees is ~10 m), six decimals: makes every row distinct.
COORDS = {"Longitude": 1e-4, "Latitude": 1e-4}
CHUNK = 100_000


def noisy(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.copy()
    n = len(out)
    for col, sd in RELATIVE.items():
        x = out[col].to_numpy(float)
        factor = np.clip(rng.normal(1.0, sd, n), 0.9, 1.1)
        out[col] = np.round(x * factor, 1)
    y = out[TARGET].to_numpy(float)
    out[TARGET] = np.round(y * np.clip(rng.normal(1.0, TARGET_NOISE, n), 0.9, 1.1))
    for col, sd in COORDS.items():
        out[col] = np.round(out[col].to_numpy(float) + rng.normal(0.0, sd, n), 6)
    return out


def make(rows: int, seed: int = 0, out_dir: Path = OUT_DIR, source: Path = SOURCE) -> Path:
    """Write `rows` resampled, noised rows to out_dir/ames_<rows>.csv; return the path."""
    base = pd.read_csv(source, keep_default_na=True)
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ames_{rows}.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            chunk = noisy(base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True), rng)
            chunk.to_csv(f, header=start == 0, index=False)
    os.replace(tmp, path)
    return path


def check_distinct(path: Path, columns: list[str] | None = None) -> int:
    """Duplicate rows in the written file (what the contract's duplicate check counts)."""
    frame = pd.read_csv(path)
    return int(pd.util.hash_pandas_object(frame[columns] if columns else frame, index=False).duplicated().sum())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    p.add_argument("--check", action="store_true", help="count duplicate rows after writing")
    args = p.parse_args(argv)
    for rows in args.rows:
        t0 = time.perf_counter()
        path = make(rows, args.seed, args.out_dir)
        msg = f"{path} ({rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s"
        if args.check:
            msg += f"; duplicate rows: {check_distinct(path)}"
        print(msg, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
