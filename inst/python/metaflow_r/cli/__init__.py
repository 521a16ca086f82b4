"""The command line every entry point shares: ``Rscript flow.R <command>``, ``run()`` in R, ``metaflow-r``."""
from metaflow_r.cli.entry import INTERRUPTED_EXIT, console_main, last_outcome, main

__all__ = ["main", "console_main", "last_outcome", "INTERRUPTED_EXIT"]
