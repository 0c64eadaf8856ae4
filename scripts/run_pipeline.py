"""The pipeline CLI (also installed as the `run-pipeline` console script).

usage: python scripts/run_pipeline.py {check,run,validate,promote,rollback,list,compare} --help
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
