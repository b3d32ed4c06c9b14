"""One signal column read as numbers: the check every metric, truth and count column passes."""

from __future__ import annotations

import polars as pl

from kscore.errors import InputError


def numeric_values(column: pl.Series, label: str) -> pl.Series:
    """A column as Float64 with NaN read as null: numbers and booleans cast, text (as CSV readers
    leave a column with a stray word) parsed; unparsable text and +/-inf are errors naming the rows."""
    name = column.name
    if column.dtype.is_numeric() or column.dtype == pl.Boolean:
        values = column.cast(pl.Float64)
    elif column.dtype in (pl.String, pl.Categorical):
        text = column.cast(pl.String).str.strip_chars()
        values = text.cast(pl.Float64, strict=False)
        bad = values.is_null() & text.is_not_null() & (text != "")
        n_bad = int(bad.sum())
        if n_bad:
            example = text.filter(bad).head(3).to_list()
            raise InputError(f"{label}: column {name!r} has {n_bad} non-numeric values (e.g. {example})")
    else:
        raise InputError(f"{label}: column {name!r} is {column.dtype}, not numeric")
    reject_infinite(values, label)
    return values.fill_nan(None)


def reject_infinite(values: pl.Series, label: str) -> None:
    n_inf = int(values.is_infinite().sum())
    if n_inf:
        raise InputError(f"{label}: column {values.name!r} has {n_inf} infinite values (+/-inf)")
