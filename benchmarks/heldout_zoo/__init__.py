"""The held-out zoo benchmark (issue 16, item 6): 25 real models fixed before any fitting
(:mod:`.models`), their measured runs (:mod:`.measure`), the predictions of a law and of two
baselines (:mod:`.predict`), and the error table (:mod:`.report`). The command line is
``benchmarks/bench_heldout_zoo.py``."""
