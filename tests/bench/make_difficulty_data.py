"""Write the benchmark inputs of `kscore difficulty`: N models x M datapoints x 4 metrics.

Every model file lists the ids in its own random order, so matching datapoints by id is real work.

    python tests/bench/make_difficulty_data.py OUT_DIR --rows 10000000 --models 5 --format parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

CONFIG = """\
id_column: id
metrics:
  - {name: accuracy, direction: higher_is_better, weight: 2}
  - {name: confidence, direction: higher_is_better}
  - {name: latency_ms, direction: lower_is_better}
  - {name: loss, direction: lower_is_better, weight: 0.5}
"""


def make_model_frame(n_rows: int, seed: int, id_offset: int) -> pl.DataFrame:
    """One model's results, ids shuffled; `id_offset` spaces ids apart (sparse ids)."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n_rows).astype(np.int64) * id_offset
    return pl.DataFrame(
        {
            "id": ids,
            "accuracy": (rng.random(n_rows) < 0.8).astype(np.float64),
            "confidence": rng.random(n_rows),
            "latency_ms": rng.gamma(2.0, 20.0, n_rows),
            "loss": rng.exponential(0.5, n_rows),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--id-step", type=int, default=1, help="ids are 0, step, 2*step, ...")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for m in range(args.models):
        frame = make_model_frame(args.rows, seed=m, id_offset=args.id_step)
        path = args.out_dir / f"results_model{m}.{args.format}"
        if args.format == "parquet":
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        print(path)
    (args.out_dir / "kscore.yaml").write_text(CONFIG)


if __name__ == "__main__":
    main()
