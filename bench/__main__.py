"""``python -m bench [NAME ...]``: run the benchmarks (all by default) and print their figures.

Each benchmark module in :data:`BENCHMARKS` exposes ``run(quick: bool) -> list[Figure]``.
``--quick`` shrinks every benchmark to a smoke-test size (the test suite runs it that way,
so the benchmark code cannot rot); ``--full`` runs the longer steps of the benchmarks whose
``run`` takes ``full`` (``overload``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

from bench.report import Figure, print_figures

#: name -> module; issues add theirs here.
BENCHMARKS: dict[str, str] = {
    "clv": "bench.clv",
    "clv_intervals": "bench.clv_intervals",
    "features": "bench.features",
    "serving": "bench.serving",
    "dask": "bench.dask",
    "sources": "bench.sources",
    "validation": "bench.validation",
    "predict": "bench.predict",
    "overload": "bench.overload",
    "pipeline": "bench.pipeline",
    "workspace": "bench.workspace",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all: {list(BENCHMARKS)})"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke-test sizes")
    size.add_argument(
        "--full", action="store_true", help="longer steps, for the benchmarks that have them"
    )
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {list(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    modules = {name: importlib.import_module(BENCHMARKS[name]) for name in names}
    sized = {n for n, m in modules.items() if "full" in inspect.signature(m.run).parameters}
    if args.full and args.names and not sized:
        parser.error(f"--full: none of {names} has longer steps (overload has)")
    figures: list[Figure] = []
    for name, module in modules.items():
        print(f"== {name}", flush=True)
        if name in sized:
            figures.extend(module.run(quick=args.quick, full=args.full))
        else:
            figures.extend(module.run(quick=args.quick))
    print()
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
