"""Landmark latency across backends: the same code as the ``lmk-bench`` command.

    python benchmarks/latency.py [--models pipnet_r18,fan4] [--backends ...] [--quick]

See ``lmk-bench --help`` (lmk/bench/cli.py) for the flags and what is measured.
"""

from lmk.bench.cli import main

if __name__ == "__main__":
    main()
