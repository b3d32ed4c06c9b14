"""The terminal tables: a command's summary (the `--json` object) as rich tables, built, not printed."""

from __future__ import annotations

from typing import Any

from kscore.columns import N_MODELS, SCORE


def cell_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_difficulty(summary: dict[str, Any]) -> list[Any]:
    """Rich renderables for a difficulty summary."""
    from rich.table import Table

    models = Table(title=f"Difficulty by model ({summary['n_datapoints']} datapoints)")
    with_accuracy = any("accuracy" in m for m in summary["models"])
    headers = ["model", "rows scored", "mean", "median", "p90", *(["accuracy"] if with_accuracy else [])]
    for header in [*headers, "warnings"]:
        models.add_column(header, justify="left" if header in ("model", "warnings") else "right")
    for m in summary["models"]:
        accuracy = [cell_text(m.get("accuracy"))] if with_accuracy else []
        models.add_row(
            m["name"],
            str(m["rows_scored"]),
            cell_text(m["mean"]),
            cell_text(m["median"]),
            cell_text(m["p90"]),
            *accuracy,
            "; ".join(m["warnings"]) or "-",
        )
    renderables: list[Any] = [models]
    if not summary["hardest"]:  # --top 0
        return renderables
    count = len(summary["hardest"])
    hardest = Table(title=f"Hardest {count} datapoint{'s' if count > 1 else ''}")
    hardest.add_column("id")
    hardest.add_column(SCORE, justify="right")
    hardest.add_column(N_MODELS, justify="right")
    names = [m["name"] for m in summary["models"]]
    for name in names:
        hardest.add_column(name, justify="right")

    def cell(row: dict[str, Any], model: str) -> str:
        signal = row.get("top_signal", {}).get(model)  # with --explain: what made it hard
        return cell_text(row["scores"][model]) + (f" {signal}" if signal else "")

    for row in summary["hardest"]:
        hardest.add_row(
            str(row["id"]), cell_text(row[SCORE]), str(row[N_MODELS]), *(cell(row, n) for n in names)
        )
    if any("top_signal" in row for row in summary["hardest"]):
        hardest.caption = "each model's score and its top signal (the largest weighted contribution)"
    renderables.append(hardest)
    return renderables


def render_standard(resolved: dict[str, Any]) -> Any:
    """A rich table of a resolved quality standard."""
    from rich.table import Table

    table = Table(title=f"Quality standard (id column: {resolved['id_column']})")
    for header in ("signal", "direction", "weight", "normalized weight"):
        table.add_column(header, justify="right" if "weight" in header else "left")
    weights = resolved["normalized_weights"]
    for metric in resolved["metrics"]:
        table.add_row(
            metric["name"], metric["direction"], f"{metric['weight']:g}", f"{weights[metric['name']]:.4f}"
        )
    task = resolved.get("task")
    if task is not None:
        table.add_row(
            f"task_error ({task['type']})",
            "lower_is_better",
            f"{task['weight']:g}",
            f"{weights['task_error']:.4f}",
        )
    table.caption = f"normalization: {resolved['normalization']}, scope: {resolved['scope']}"
    return table


def render_embed(summary: dict[str, Any]) -> list[Any]:
    """Rich renderables for an embed-scores summary."""
    from rich.table import Table

    splits = Table(title="Rows per split")
    splits.add_column("split")
    splits.add_column("rows", justify="right")
    for split, count in summary["rows_per_split"].items():
        splits.add_row(str(split), str(count))
    quantiles = Table(title=f"Scores of the {summary['n_train']} train rows")
    quantiles.add_column("score")
    labels = ["min", "p10", "median", "p90", "max"]
    for label in labels:
        quantiles.add_column(label, justify="right")
    for score, values in summary["quantiles"].items():
        quantiles.add_row(score, *(cell_text(v) for v in values.values()))
    renderables: list[Any] = [splits, quantiles]
    tables = [("least_represented", "Least represented train points")]
    if "highest_potential" in summary:
        tables.append(("highest_potential", "Highest potential difficulty"))
    for key, title in tables:
        rows = summary[key]
        table = Table(title=f"{title} ({len(rows)})")
        if rows:
            for column in rows[0]:
                table.add_column(column, justify="left" if column in ("id", "split") else "right")
            for row in rows:
                table.add_row(*(cell_text(v) if isinstance(v, float) else str(v) for v in row.values()))
        renderables.append(table)
    return renderables


def render_compare(summary: dict[str, Any]) -> list[Any]:
    """Rich renderables for a comparison summary."""
    from rich.table import Table

    counts = Table(title=f"{summary['baseline']} -> {summary['candidate']} (margin {summary['margin']:g})")
    counts.add_column("")
    counts.add_column("datapoints", justify="right")
    only = summary["only_in_one"]
    for label, value in (
        ("regressions", summary["regressions"]),
        ("improvements", summary["improvements"]),
        ("unchanged", summary["unchanged"]),
        (f"only scored by {summary['baseline']}", only["only_baseline"]),
        (f"only scored by {summary['candidate']}", only["only_candidate"]),
        (
            f"common failures (difficulty > {summary['common_failure_threshold']:g})",
            summary["common_failures"],
        ),
    ):
        counts.add_row(label, str(value))
    renderables: list[Any] = [counts]
    if summary["gates"]:
        gate_table = Table(title="Gates")
        for header in ("gate", "limit", "value", "result"):
            gate_table.add_column(header)
        for gate in summary["gates"]:
            result = "[green]pass[/green]" if gate["passed"] else "[red]FAIL[/red]"
            gate_table.add_row(gate["name"], str(gate["limit"]), str(gate["value"]), result)
        renderables.append(gate_table)
    if not summary["largest_regressions"]:
        return renderables
    top = Table(title=f"Largest regressions ({len(summary['largest_regressions'])})")
    by_model = "model" in summary["largest_regressions"][0]
    for header in ("id", *(["model"] if by_model else []), "baseline", "candidate", "delta"):
        top.add_column(header, justify="left" if header in ("id", "model") else "right")
    for row in summary["largest_regressions"]:
        top.add_row(
            str(row["id"]), *([str(row["model"])] if by_model else []), cell_text(row["baseline"]),
            cell_text(row["candidate"]), f"{row['delta']:+.4f}",
        )  # fmt: skip
    renderables.append(top)
    return renderables


def render_select(summary: dict[str, Any]) -> list[Any]:
    """Rich renderables for a select summary: the picks, then what they cover."""
    from rich.table import Table

    by = summary["by"]
    picks = Table(title=f"{summary['n_picked']} picks ({summary['strategy']}, by {by}"
                  f"{' ascending' if summary['ascending'] else ''})")  # fmt: skip
    for header in ("rank", "id", by, "distance"):
        picks.add_column(header, justify="left" if header == "id" else "right")
    for row in summary["picks"]:
        picks.add_row(str(row["rank"]), str(row["id"]), cell_text(row[by]), cell_text(row["distance"]))
    shown = len(summary["picks"])
    if shown < summary["n_picked"]:
        picks.caption = f"the first {shown} of {summary['n_picked']} (--top)"
    facts = Table(title="Summary", show_header=False)
    facts.add_column("")
    facts.add_column("", justify="right")
    low, high = summary["score_range"] or (None, None)
    labeled = summary["labeled"]
    for label, value in (
        ("candidates (train rows not labeled, with a score)", str(summary["n_candidates"])),
        ("picked", str(summary["n_picked"])),
        (f"{by} of the picks", f"{cell_text(low)} .. {cell_text(high)}"),
        (
            "coverage radius (farthest candidate from a pick or labeled point)",
            cell_text(summary["coverage_radius"]),
        ),
        ("distances measured in", summary["space"]),
        ("labeled ids (given / in the file)", f"{labeled['given']} / {labeled['in_file']}"),
        ("train rows skipped: no score", str(summary["skipped_null_score"])),
    ):
        facts.add_row(label, value)
    return [picks, facts] if summary["picks"] else [facts]  # --top 0: no empty table
