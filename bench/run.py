"""Entry point of the benchmark harness (issue 3); see bench/README.md.

.venv/bin/python bench/run.py [--quick | --smoke] [--scenario NAME ...] [--out PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, bench/ is on sys.path, not the repository: the harness is `bench.*`.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.harness import main

    sys.exit(main())
