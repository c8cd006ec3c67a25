"""Command line: ``interlace demo`` fits a bundled data set and prints the report."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _demo() -> int:
    import interlace
    from interlace import datasets

    df = datasets.load("sleepstudy")
    print("interlace demo: sleepstudy, Reaction ~ Days + (Days | Subject), REML\n")
    t0 = time.perf_counter()
    r = interlace.fit("Reaction ~ Days", data=df, random=["(Days | Subject)"])
    dt = time.perf_counter() - t0
    print(r.summary())
    print(f"\nfitted in {dt:.3f} s ({r.optimizer_info['n_evals']} deviance evaluations)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interlace", description="Mixed-effects models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="fit a bundled data set and print the lme4-style summary")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo()
    return 2


if __name__ == "__main__":
    sys.exit(main())
