"""The plot job (`kscore plot`): the 2D map of an embed-scores output, drawn to a picture."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import polars as pl

from kscore.columns import REPRESENTATION


def plot_scores(
    scores: str | os.PathLike | pl.DataFrame,
    out: str | os.PathLike = "map.png",
    *,
    color: str = REPRESENTATION,
    title: str | None = None,
    size: str | tuple[int, int] = "1200x900",
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`kscore plot`: draw the map of an embed-scores output (a path or a frame), the train points
    coloured by `color`, to `out` (.png, .svg or .pdf); returns what was drawn."""
    from kscore.io import read_table
    from kscore.jobs.common import checked_plot
    from kscore.plot import map_data, plot_map
    from kscore.storage import as_path, using
    from kscore.summaries import envelope

    with using(storage_options):
        in_memory = isinstance(scores, pl.DataFrame)
        inputs = [] if in_memory else [as_path(scores)]
        picture_size = checked_plot(out, size, inputs)
        data = map_data(scores if in_memory else read_table(inputs[0]), color)  # type: ignore[arg-type]
        plot_map(data, out, title=title, size=picture_size)
    return envelope("plot", {"output": str(out), "points": data.n_points, "as_densities": bool(data.density)})
