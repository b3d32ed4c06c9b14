"""Pictures: the embedding map and the difficulty distributions (matplotlib, Agg backend).

matplotlib is an optional extra (`pip install 'kscore[plot]'`), imported only when a picture is asked for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kscore.columns import LOCAL, MAP_X, MAP_Y, POTENTIAL, REPRESENTATION, SCORE, model_score_column
from kscore.errors import InputError, KscoreError, KscoreWarning, did_you_mean

COLOR_COLUMNS = (REPRESENTATION, POTENTIAL, LOCAL, SCORE)
# Beyond this many points the map draws densities (hexagonal bins), not one marker per point.
DENSITY_THRESHOLD = 100_000
OUTLINED = 10  # the least represented train points, outlined on the map
DPI = 100
PICTURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


class PlotExtraMissing(KscoreError):
    """matplotlib is not installed."""


@dataclass
class MapData:
    """What the map shows: reference and train coordinates, train colors, the outlined points."""

    reference_xy: np.ndarray
    train_xy: np.ndarray
    train_values: np.ndarray
    outlined_xy: np.ndarray
    color: str
    density: bool  # draw hexagonal bins instead of markers

    @property
    def n_points(self) -> int:
        return len(self.reference_xy) + len(self.train_xy)


def valid_colors(table: pl.DataFrame) -> list[str]:
    return [c for c in COLOR_COLUMNS if c in table.columns]


# What to do when no train point has the --color score.
_COLOR_HINTS = {
    SCORE: "it is the reference rows' own score; color the train points by local_difficulty "
    "or potential_difficulty_score",
    POTENTIAL: "make the file with `kscore embed-scores --difficulty FILE`",
    LOCAL: "make the file with `kscore embed-scores --difficulty FILE`",
}


def map_data(table: pl.DataFrame, color: str = REPRESENTATION, outlined: int = OUTLINED) -> MapData:
    """Split an embed-scores table into the map's layers (train rows: those with a representation score)."""
    for column in (MAP_X, MAP_Y, REPRESENTATION):
        if column not in table.columns:
            raise InputError(f"missing column {column!r}: expected the output of `kscore embed-scores`")
    if color not in valid_colors(table):
        raise InputError(
            f"unknown --color {color!r}{did_you_mean(color, valid_colors(table))} (valid: "
            f"{', '.join(valid_colors(table))})"
        )
    is_train = table.get_column(REPRESENTATION).is_not_null()
    xy = table.select(MAP_X, MAP_Y).to_numpy()
    train = table.filter(is_train)
    least = train.sort(REPRESENTATION).head(outlined)
    values = train.get_column(color).cast(pl.Float64).fill_nan(None).fill_null(np.nan).to_numpy()
    missing = int(np.isnan(values).sum())
    if missing == len(values):
        raise InputError(f"--color {color}: no train point has a {color}; {_COLOR_HINTS.get(color, '')}")
    if missing:
        warnings.warn(
            KscoreWarning(f"--color {color}: {missing} of {len(values)} train points have none; drawn grey"),
            stacklevel=2,
        )
    return MapData(
        reference_xy=xy[~is_train.to_numpy()],
        train_xy=xy[is_train.to_numpy()],
        train_values=values,
        outlined_xy=least.select(MAP_X, MAP_Y).to_numpy(),
        color=color,
        density=table.height > DENSITY_THRESHOLD,
    )


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotExtraMissing(
            "pictures need matplotlib, the 'plot' extra: pip install 'kscore[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def picture_format(out: Path) -> str:
    """The format of a picture, by its extension; any other one is an InputError listing them."""
    fmt = PICTURE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{out}: unsupported picture type {out.suffix or '(none)'!r}; name it "
            f"{', '.join(PICTURE_FORMATS)}"
        )
    return fmt


def _save(figure: Any, out: Path) -> None:
    from kscore.io import write_atomic

    fmt = picture_format(out)
    write_atomic(out, lambda temp: figure.savefig(temp, dpi=DPI, format=fmt))


def plot_map(
    data: MapData, out: Path, *, title: str | None = None, size: tuple[int, int] = (1200, 900)
) -> None:
    """Render the map to a picture of `size` pixels (PNG, SVG or PDF, by `out`'s extension)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    if data.density:
        grid = 200
        axes.hexbin(
            *data.reference_xy.T, gridsize=grid, bins="log", cmap="Greys", mincnt=1, alpha=0.6, linewidths=0
        )
        shown = ~np.isnan(data.train_values)
        layer = axes.hexbin(
            *data.train_xy[shown].T,
            C=data.train_values[shown],
            reduce_C_function=np.mean,
            gridsize=grid,
            cmap="viridis",
            mincnt=1,
            linewidths=0,
        )
        label = f"{data.color} (mean per cell)"
    else:
        marker_size = max(1.0, min(12.0, 4e4 / max(data.n_points, 1)))
        axes.scatter(
            *data.reference_xy.T,
            s=marker_size,
            marker="x",
            c="0.55",
            linewidths=0.6,
            label=f"reference ({len(data.reference_xy)})",
            rasterized=True,
        )
        valued = ~np.isnan(data.train_values)
        if not valued.all():
            axes.scatter(
                *data.train_xy[~valued].T,
                s=marker_size,
                c="0.8",
                label=f"train, no {data.color} ({int((~valued).sum())})",
                rasterized=True,
            )
        layer = axes.scatter(
            *data.train_xy[valued].T,
            s=marker_size,
            c=data.train_values[valued],
            cmap="viridis",
            label=f"train ({int(valued.sum())})",
            rasterized=True,
        )
        label = data.color
    axes.scatter(
        *data.outlined_xy.T,
        s=90,
        facecolors="none",
        edgecolors="red",
        linewidths=1.4,
        label=f"{len(data.outlined_xy)} least represented",
    )
    figure.colorbar(layer, ax=axes, label=label)
    axes.legend(loc="best", fontsize="small", markerscale=1.5)
    axes.set_xlabel(MAP_X)
    axes.set_ylabel(MAP_Y)
    axes.set_title(title or f"Embedding map colored by {data.color}")
    _save(figure, out)
    plt.close(figure)


def plot_picks(
    table: pl.DataFrame,
    picks: pl.DataFrame,
    id_column: str,
    labeled: pl.Series | None,
    out: Path,
    *,
    size: tuple[int, int] = (1200, 900),
) -> None:
    """The map with every row in grey, the labeled points and the picks marked (needs map_x/y)."""
    if not all(c in table.columns for c in (MAP_X, MAP_Y)):
        raise InputError(
            "--plot draws the picks on the map: give an embed-scores output (this file has no map)"
        )
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    xy = table.select(MAP_X, MAP_Y).to_numpy()
    marker_size = max(1.0, min(8.0, 3e4 / max(len(xy), 1)))
    axes.scatter(*xy.T, s=marker_size, c="0.8", label=f"all rows ({len(xy)})", rasterized=True)
    if labeled is not None:
        known = table.filter(pl.col(id_column).is_in(labeled.cast(table.schema[id_column]).implode()))
        axes.scatter(
            *known.select(MAP_X, MAP_Y).to_numpy().T, s=40, marker="s", facecolors="none",
            edgecolors="tab:blue", linewidths=1.2, label=f"labeled ({known.height})",
        )  # fmt: skip
    chosen = picks.select(id_column, "rank").join(table, on=id_column, how="left").sort("rank")
    layer = axes.scatter(
        *chosen.select(MAP_X, MAP_Y).to_numpy().T, s=36, c=chosen.get_column("rank").to_numpy(),
        cmap="autumn", edgecolors="black", linewidths=0.5, label=f"picks ({chosen.height})",
    )  # fmt: skip
    figure.colorbar(layer, ax=axes, label="pick order (rank)")
    axes.legend(loc="best", fontsize="small", markerscale=1.2)
    axes.set_xlabel(MAP_X)
    axes.set_ylabel(MAP_Y)
    axes.set_title(f"{chosen.height} picks ({picks.get_column('strategy')[0] if picks.height else ''})")
    _save(figure, out)
    plt.close(figure)


def plot_difficulty(
    table: pl.DataFrame | pl.LazyFrame,
    models: list[str],
    out: Path,
    *,
    title: str | None = None,
    size: tuple[int, int] = (1200, 900),
) -> None:
    """Histograms of `difficulty_score` and of each model's score, overlaid in one panel (a
    LazyFrame is read one column at a time)."""
    from kscore.summaries import column_of

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    bins = np.linspace(0, 1, 41)
    for model in models:
        values = column_of(table, model_score_column(model)).drop_nulls().to_numpy()
        axes.hist(values, bins=bins, histtype="step", linewidth=1.2, label=f"{model} ({len(values)})")
    overall = column_of(table, SCORE).drop_nulls().to_numpy()
    axes.hist(overall, bins=bins, color="0.3", alpha=0.35, label=f"difficulty_score ({len(overall)})")
    axes.set_yscale("log")
    axes.set_xlabel("score")
    axes.set_ylabel("datapoints (log scale)")
    axes.set_title(title or "Difficulty scores")
    axes.legend(fontsize="small")
    _save(figure, out)
    plt.close(figure)


def parse_size(text: str) -> tuple[int, int]:
    """'1200x900' -> (1200, 900)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like 1200x900, not {text!r}") from None
    if not (100 <= width <= 10_000 and 100 <= height <= 10_000):
        raise InputError(f"--size must be between 100x100 and 10000x10000 pixels, not {text!r}")
    return width, height
