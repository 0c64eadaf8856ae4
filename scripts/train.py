"""Train the configured model and register it as a new version in MLflow.

usage: python scripts/train.py [--config PATH] [--env NAME]
"""

from __future__ import annotations

import argparse
import sys

from pipeline import config, figures
from pipeline.errors import PipelineError
from pipeline.jobs import train_and_log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="pipeline config (default: configs/pipeline_config.yaml)")
    parser.add_argument("--env", help="environment whose settings apply (default: the file's default_env)")
    args = parser.parse_args(argv)
    try:
        settings = config.load(args.config, args.env)
        trained = train_and_log(settings)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    c, m = trained.candidate, trained.metrics
    print(f"registered {c.name} version {c.version} (run {c.run_id})")
    print(f"eval {figures.metrics_line(m)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
