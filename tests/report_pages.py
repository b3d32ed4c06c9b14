"""Helpers for the report's tests: the inputs they share, and the page's embedded data read back."""

from __future__ import annotations

import base64
import gzip
import html.parser
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .conftest import run_kscore

HOSTILE_IDS = ("</script><script>alert(1)</script>", "<img src=x onerror=alert(2)>")
GROUPS = ((0.0, 0.0), (10.0, 0.0), (0.0, 10.0))  # three train groups, far apart
REFERENCE_CENTRE = (10.0, 10.0)


def make_inputs(folder: Path) -> dict[str, Path]:
    """A small dataset whose map is its 2D embedding (--reducer none): three train groups of 30
    points far apart, 32 reference points (two of them with hostile ids), two models' results;
    then the real difficulty, embed-scores and select outputs, and a --data file."""
    rng = np.random.default_rng(1)
    ids, points, split = [], [], []
    for g, (cx, cy) in enumerate(GROUPS):
        for i in range(30):
            ids.append(f"g{g}-{i:02d}")
            points.append([cx + rng.normal(0, 0.3), cy + rng.normal(0, 0.3)])
            split.append("train")
    reference = [f"r-{i:02d}" for i in range(30)] + list(HOSTILE_IDS)
    for name in reference:
        ids.append(name)
        points.append([REFERENCE_CENTRE[0] + rng.normal(0, 0.3), REFERENCE_CENTRE[1] + rng.normal(0, 0.3)])
        split.append("test")
    pl.DataFrame({"id": ids, "split": split, "embedding": points}).write_parquet(folder / "emb.parquet")
    for model in ("a", "b"):
        pl.DataFrame({"id": reference, "correct": rng.random(len(reference))}).write_csv(
            folder / f"results_{model}.csv"
        )
    (folder / "std.yaml").write_text(
        "id_column: id\nmetrics:\n  - {name: correct, direction: higher_is_better}\n"
    )
    pl.DataFrame(
        {
            "id": ids,
            "label": [f"label {i % 3}" for i in range(len(ids))],
            "note": ['<b>bold</b> & "quoted"' for _ in ids],
        }
    ).write_csv(folder / "data.csv")
    files = {
        "difficulty": folder / "diff.parquet",
        "embed": folder / "embed.parquet",
        "picks": folder / "picks.parquet",
        "compare": folder / "compare.parquet",
    }
    steps = [
        ["difficulty", str(folder / "results_a.csv"), str(folder / "results_b.csv"), "-c",
         str(folder / "std.yaml"), "--explain", "-o", str(files["difficulty"])],
        ["embed-scores", str(folder / "emb.parquet"), "--reducer", "none", "--difficulty",
         str(files["difficulty"]), "-o", str(files["embed"])],
        ["select", str(files["embed"]), "--budget", "5", "-o", str(files["picks"])],
        ["compare", str(files["difficulty"]), "--baseline", "a", "--candidate", "b",
         "-o", str(files["compare"])],
    ]  # fmt: skip
    for step in steps:
        result = run_kscore(*step, "-q")
        assert result.returncode == 0, result.stderr
    return files


def group_ids(group: int) -> list[str]:
    return [f"g{group}-{i:02d}" for i in range(30)]


def page_data(page: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's header JSON and its map columns decoded from the embedded payload."""
    header = json.loads(_script(page, "kscore-header"))
    if header["map"] is None:
        return header, {}
    blob = gzip.decompress(base64.b64decode(_script(page, "kscore-points")))
    columns: dict[str, Any] = {}
    kinds = {"f32": np.float32, "u16": np.uint16, "i32": np.int32, "u8": np.uint8}
    for spec in header["map"]["buffers"]:
        raw = blob[spec["offset"] : spec["offset"] + spec["bytes"]]
        columns[spec["name"]] = (
            np.frombuffer(raw, dtype=kinds[spec["type"]]) if spec["type"] in kinds else json.loads(raw)
        )
    return header, columns


def _script(page: str, element_id: str) -> str:
    match = re.search(rf'<script type="[^"]+" id="{element_id}">(.*?)</script>', page, re.S)
    assert match, element_id
    return match.group(1)


class Tables(html.parser.HTMLParser):
    """Every table of a page: its id and rows of (text, data-value) cells, and rows' data-point."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.points: dict[str, list[str | None]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._value: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
            self.points[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append([])
            self.points[self._table].append(a.get("data-point"))
        elif tag == "td" and self._in_body:
            self._cell, self._value = [], a.get("data-value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table][-1].append(("".join(self._cell), self._value))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(page: str) -> Tables:
    parser = Tables()
    parser.feed(page)
    return parser
