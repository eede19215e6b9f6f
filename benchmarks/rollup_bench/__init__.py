"""The benchmarks behind ``python benchmarks/run.py``, as a package.

- ``harness``: the run's parameters (:class:`~rollup_bench.harness.Params`), medians and percentiles,
  the sandbox and the children's environment, child-process timing (``worker`` runs a registered
  function in a fresh interpreter, ``wall`` times a whole process), and the table's :class:`Row`.
- ``endpoints``: the healthy, refused and never-answering HTTP endpoints on 127.0.0.1.
- ``competitors``: the SDKs users would otherwise pick, one :class:`Competitor` each.
- ``figures/``: one module per figure; each defines ``FIGURE`` (its bench, its rows with target and
  verdict, an optional section of its own) and registers its child-process functions.
- ``report``: the machine, the table, the sections and the notes; ``main``: the command line.

To add a figure, add a module under ``figures/`` that defines its target constants, its child
functions (decorated with ``@in_child("name")``), ``bench(ctx)``, ``rows(results, quick)`` and
``FIGURE = Figure(key, order, bench, rows)``; it is found by name, runs in ``order`` and its rows
appear in the table in that order. To add a competitor, add a :class:`Competitor` to
``competitors.COMPETITORS`` with its modules and whichever of the CLI script and the hot-loop call it
has; the import, micro and whole-CLI-run figures pick it up. Describe a new figure in
``report.NOTES``, which the report prints.
"""
