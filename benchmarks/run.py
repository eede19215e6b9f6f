"""Benchmarks: telemetry_rollup side by side with the SDKs users would otherwise pick.

    pip install -e '.[bench]'
    python benchmarks/run.py            # full run (a few minutes), writes docs/benchmarks.md
    python benchmarks/run.py --quick    # only checks that every benchmark works (seconds)

Everything is measured in the same run on the same machine, each figure in its own fresh
interpreter (``run.py --worker NAME``), and reported as the median over repeated rounds; a ratio
or an overhead is taken inside one round (ours and the baseline back to back) and then the median
of those is reported, so load from other processes shifts both sides alike. A competitor whose
package is not installed is skipped with a note in the table.

Network: only 127.0.0.1. The "healthy" endpoint is a small in-process HTTP server answering 200
to every POST; "refused" is a port nobody listens on; "never answering" is a listening socket
that never accepts, so connections hang until the client's own timeout. Every process this
script starts is waited for or ended by its pid before it returns.

The code is the package ``rollup_bench`` next to this file (see its docstring, and docs/design.md's
"Benchmarks" section, for how to add a figure or a competitor); this file only runs it.
"""

from __future__ import annotations

import sys

from rollup_bench.main import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__.split("\n\n")[0]))
