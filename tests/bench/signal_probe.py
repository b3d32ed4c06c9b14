"""The Ctrl-C probe at 3M rows (issue: hostile input, second pass).

SIGINT and SIGTERM (alternating) at 20 seeded moments of a partitioned `kscore difficulty` run of 3
models x 3,000,000 rows (`--memory-limit 400MiB`, `--quiet`), for a Parquet, a CSV and a `DIR/`
output: every run must exit 0, 130 or 143 with at most one stderr line (the `error:` line), and leave
either the complete output (exit 0, or a line saying it was written) or nothing, never a temporary.

    python tests/bench/signal_probe.py --folder /tmp/kscore-signal-probe   # then rm -rf that folder
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.signal_probe import OUTPUTS, make_inputs, moments, probe, run_length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/kscore-signal-probe"))
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--moments", type=int, default=20)
    parser.add_argument("--memory-limit", default="400MiB")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    names = make_inputs(args.folder, args.rows)
    failures = 0
    for output in OUTPUTS:
        length = run_length(args.folder, names, output, args.memory_limit)
        outcomes: collections.Counter[str] = collections.Counter()
        for number, delay in enumerate(moments(length, args.moments, seed=len(output))):
            found = probe(args.folder, names, output, number, delay, args.rows, args.memory_limit)
            outcomes[f"{found.signal} exit {found.code} {found.state}"] += 1
            for problem in found.problems():
                failures += 1
                print(f"  {output} {found.signal} at {found.delay} s: {problem}")
        summary = ", ".join(f"{n} x {k}" for k, n in sorted(outcomes.items()))
        print(f"{output}: a run takes {length:.1f} s; {args.moments} signals: {summary}", flush=True)
    print(f"{failures} problems")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
