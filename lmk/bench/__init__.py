"""``lmk-bench``: latency and parity of every way lmk can run a model, on this machine.

A package (not loose scripts under benchmarks/) because ``lmk-bench`` is a console script and
console scripts must live in an installed package; ``benchmarks/latency.py`` calls the same
``main``. ``timing`` (round-robin percentiles) and ``machine`` (who ran it) are shared with
the other scripts under benchmarks/.
"""
