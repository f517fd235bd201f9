"""Benchmarks: one script per benchmark, each runnable alone
(``python benchmarks/attack_step.py [--quick]``) and all of them through
``python benchmarks/run_all.py`` (``make bench``) or ``robust bench``."""
