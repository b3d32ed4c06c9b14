"""Benchmark of `kscore report` at 1,000,000 points (issue: kscore report).

Makes a 1M-point map (a 2D embedding, so --reducer none: the map is the embedding) with the three
embed scores and three models' difficulty, through the real commands; then measures, alternating
nothing else (one contender):
- the time to write the report (median of --repeats runs) and its size;
- headless Chromium (Debian's, software WebGL, no GPU): the time from opening the file to the drawn
  map (the page's `ready`, after the first draw), median of --repeats opens;
- pan and zoom: frame times measured in the page (requestAnimationFrame) while the mouse drags and the
  wheel zooms, median and p95;
- the bundled sample's report size.

With --against OLD (a folder holding another kscore's source, e.g. `git archive 56a7db2`): instead,
the time and peak memory (the process tree's summed RSS, every 50 ms) of `kscore report` with this
kscore and with OLD, alternated, --repeats times each (on --rows points; 10,000,000 for the README).

    python tests/bench/bench_report.py --folder /tmp/kscore-bench-report   # then rm -rf that folder
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.test_report_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def kscore(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kscore", *args, "-q"], cwd=cwd, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def make_data(folder: Path, rows: int) -> None:
    if (folder / "embed_scores.parquet").exists():
        return
    rng = np.random.default_rng(0)
    centres = rng.uniform(-20, 20, size=(40, 2))
    which = rng.integers(0, len(centres), rows)
    points = centres[which] + rng.normal(0, 1.2, size=(rows, 2))
    split = np.where(rng.random(rows) < 0.7, "train", "test")
    ids = np.arange(rows)
    pl.DataFrame({"id": ids, "split": split, "x": points[:, 0], "y": points[:, 1]}).select(
        "id", "split", pl.concat_arr("x", "y").alias("embedding")
    ).write_parquet(folder / "embeddings.parquet")
    reference = ids[split == "test"]
    hardness = (which[split == "test"] % 7) / 7
    for model in ("a", "b", "c"):
        correct = (rng.random(len(reference)) > hardness * rng.uniform(0.5, 1.0)).astype(float)
        probability = np.clip(correct * 0.6 + rng.random(len(reference)) * 0.4, 0, 1)
        pl.DataFrame({"id": reference, "correct": correct, "true_class_prob": probability}).write_parquet(
            folder / f"results_{model}.parquet"
        )
    (folder / "standard.yaml").write_text(
        "id_column: id\nmetrics:\n  - {name: correct, direction: higher_is_better, weight: 2}\n"
        "  - {name: true_class_prob, direction: higher_is_better}\n"
    )
    results = [str(folder / f"results_{m}.parquet") for m in "abc"]
    print(f"difficulty: {kscore('difficulty', *results, '-c', 'standard.yaml', cwd=folder):.1f} s")
    seconds = kscore(
        "embed-scores", "embeddings.parquet", "--reducer", "none",
        "--difficulty", "difficulty_scores.parquet", cwd=folder,
    )  # fmt: skip
    print(f"embed-scores: {seconds:.1f} s")


def open_times(page_path: Path, repeats: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    drawn, frames = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(repeats):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_offline(True)
            page = context.new_page()
            started = time.perf_counter()
            page.goto(page_path.resolve().as_uri(), timeout=120_000)
            page.wait_for_function(
                "window.kscoreReport && window.kscoreReport.ready", timeout=120_000, polling=50
            )
            drawn.append(time.perf_counter() - started)
            page.locator("#map").scroll_into_view_if_needed()
            box = page.locator("#map-canvas").bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.evaluate(
                """() => { window.frameTimes = []; let last = performance.now();
                const tick = (t) => { window.frameTimes.push(t - last); last = t;
                  if (window.frameTimes.length < 100000) requestAnimationFrame(tick); };
                requestAnimationFrame(tick); }"""
            )
            page.mouse.move(cx, cy)
            for step in range(6):  # zoom in and out, then pan
                page.mouse.wheel(0, -300 if step < 3 else 300)
                page.wait_for_timeout(150)
            page.mouse.down()
            page.mouse.move(cx + 200, cy + 120, steps=40)
            page.mouse.up()
            page.wait_for_timeout(200)
            times = page.evaluate("window.frameTimes.slice(2)")
            frames.extend(times)
            context.close()
        browser.close()
    return drawn, frames


def screenshot(out: Path) -> None:
    """The README's picture: the sample's report, the map coloured by potential difficulty, a point
    hovered."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kscore-report-screenshot-") as folder:
        _screenshot(Path(folder), out, sync_playwright)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


def _screenshot(folder: Path, out: Path, sync_playwright: Any) -> None:
    files = [str(p) for p in sorted((ROOT / "sample_data").glob("results_*.csv"))]
    standard = str(ROOT / "configs" / "quality_standard.yaml")
    kscore("difficulty", *files, "-c", standard, "--explain", cwd=folder)
    kscore(
        "embed-scores", str(ROOT / "sample_data" / "embeddings.parquet"), "--difficulty",
        "difficulty_scores.parquet", cwd=folder,
    )  # fmt: skip
    kscore("report", "-o", "report.html", "--title", "kscore report: the sample digits", cwd=folder)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 820})
        page.goto((folder / "report.html").as_uri())
        page.wait_for_function("window.kscoreReport && window.kscoreReport.ready")
        page.evaluate("document.getElementById('map').scrollIntoView()")
        box = page.locator("#map-canvas").bounding_box()
        codes = page.evaluate("Array.from(window.kscoreReport.data.potential_difficulty_score)")
        highest = sorted(((c, i) for i, c in enumerate(codes) if c != 65535), reverse=True)
        for _, index in highest[:50]:  # the highest potential that no other point covers
            x, y = page.evaluate(f"window.kscoreReport.scatterplot.getScreenPosition({index})")
            page.mouse.move(box["x"] + x, box["y"] + y)
            page.locator("#tooltip").wait_for(state="visible")
            page.wait_for_timeout(100)
            if page.evaluate("window.kscoreReport.hovered") == index:
                break
        page.wait_for_timeout(300)
        page.screenshot(path=str(out))
        browser.close()


def side_by_side(folder: Path, against: Path, repeats: int) -> None:
    """`kscore report` of the difficulty and embed-scores outputs with this kscore and `against`."""
    from tests.bench.peak import run_measured

    command = [sys.executable, "-m", "kscore", "report", "difficulty_scores.parquet", "embed_scores.parquet"]
    figures: dict[str, list[tuple[float, int]]] = {"this": [], "against": []}
    for _ in range(repeats):
        for name, path in (("this", ROOT), ("against", against)):
            env = {**os.environ, "PYTHONPATH": str(path)}
            code, seconds, peak = run_measured(
                [*command, "-o", f"report-{name}.html", "-q"], cwd=folder, env=env
            )
            assert code == 0, f"{name}: exit {code}"
            figures[name].append((seconds, peak))
            print(f"{name}: {seconds:.2f} s, peak {peak / 2**20:,.0f} MiB", flush=True)
    for name, runs in figures.items():
        seconds = statistics.median(s for s, _ in runs)
        peak = statistics.median(p for _, p in runs)
        print(f"{name} ({'kscore here' if name == 'this' else against}): median {seconds:.2f} s, "
              f"peak {peak / 2**20:,.0f} MiB over {repeats} runs")  # fmt: skip
    same = (folder / "report-this.html").read_bytes() == (folder / "report-against.html").read_bytes()
    print(f"the same page bytes: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/kscore-bench-report"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", action="store_true", help="Only remake sample_data/report.png.")
    parser.add_argument("--against", type=Path, help="Another kscore's source: time and memory side by side.")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(ROOT / "sample_data" / "report.png")
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    make_data(args.folder, args.rows)
    if args.against:
        side_by_side(args.folder, args.against, args.repeats)
        return
    inputs = ["difficulty_scores.parquet", "embed_scores.parquet"]
    writes = [kscore("report", *inputs, "-o", "report.html", cwd=args.folder) for _ in range(args.repeats)]
    size = (args.folder / "report.html").stat().st_size
    print(f"report of {args.rows:,} points: written in {statistics.median(writes):.2f} s (median of "
          f"{args.repeats}: {', '.join(f'{w:.2f}' for w in writes)}), {size / 1e6:.1f} MB")  # fmt: skip
    drawn, frames = open_times(args.folder / "report.html", args.repeats)
    print(f"drawn after opening: {statistics.median(drawn):.2f} s (median of {args.repeats}: "
          f"{', '.join(f'{d:.2f}' for d in drawn)})")  # fmt: skip
    if frames:
        p50, p90, p95, top = np.percentile(frames, [50, 90, 95, 100])
        print(f"pan/zoom frame times over {len(frames)} frames: median {p50:.0f} ms, p90 {p90:.0f} ms, "
              f"p95 {p95:.0f} ms, max {top:.0f} ms; {np.mean(np.array(frames) > 50):.0%} "
              "over 50 ms")  # fmt: skip
    sample = Path(os.environ.get("TMPDIR", "/tmp")) / "kscore-bench-report-sample"
    sample.mkdir(exist_ok=True)
    files = [str(p) for p in sorted((ROOT / "sample_data").glob("results_*.csv"))]
    kscore("difficulty", *files, "-c", str(ROOT / "configs" / "quality_standard.yaml"), cwd=sample)
    kscore(
        "embed-scores", str(ROOT / "sample_data" / "embeddings.parquet"), "--difficulty",
        "difficulty_scores.parquet", cwd=sample,
    )  # fmt: skip
    kscore("report", "-o", "report.html", cwd=sample)
    print(f"the sample's report: {(sample / 'report.html').stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
