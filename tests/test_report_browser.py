"""kscore report in a real browser: Debian's headless Chromium (software WebGL), driven by Playwright,
offline. Skipped where no Chromium is installed, unless KSCORE_REQUIRE_BROWSER=1 (.ci/run sets it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from .conftest import run_kscore
from .report_pages import HOSTILE_IDS, group_ids, make_inputs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags of a closed machine: no background connections, software WebGL (no GPU).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


def _require_browser() -> None:
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if CHROMIUM is None:
        missing = "no chromium on PATH (Debian: apt-get install chromium)"
    if missing:
        if os.environ.get("KSCORE_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """One Playwright per module: a second one in the same thread is refused."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    files = make_inputs(folder)
    out = folder / "report.html"
    result = run_kscore(
        "report", *(str(files[k]) for k in ("difficulty", "embed", "picks", "compare")),
        "--data", str(folder / "data.csv"), "--top", "40", "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


class Opened:
    """A page opened from file:// with every request, console message and dialog recorded."""

    def __init__(self, browser: Any, path: Path, *, javascript: bool = True) -> None:
        self.context = browser.new_context(
            viewport={"width": 1200, "height": 900}, java_script_enabled=javascript, accept_downloads=True
        )
        self.context.set_offline(True)
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.dialogs: list[str] = []
        self.page = self.context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.console.append(("pageerror", str(error))))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        if javascript:
            self.page.wait_for_function(
                "window.kscoreReport && (window.kscoreReport.ready || window.kscoreReport.error)",
                timeout=60_000,
            )
            assert self.page.evaluate("window.kscoreReport.error") is None

    def index_of(self, point_id: str) -> int:
        return self.page.evaluate("(id) => window.kscoreReport.data.id.indexOf(id)", point_id)

    def on_screen(self, index: int) -> tuple[float, float]:
        """Where point `index` is drawn, in page coordinates."""
        self.page.locator("#map").scroll_into_view_if_needed()
        box = self.page.locator("#map-canvas").bounding_box()
        x, y = self.page.evaluate("(i) => window.kscoreReport.scatterplot.getScreenPosition(i)", index)
        return box["x"] + x, box["y"] + y

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def opened(browser: Any, page_file: Path) -> Iterator[Opened]:
    view = Opened(browser, page_file)
    yield view
    view.close()


def test_the_page_opens_offline_with_no_error_and_no_request(opened: Opened):
    opened.page.wait_for_timeout(300)
    assert opened.requests == [opened.url]  # the file itself, nothing else
    errors = [m for m in opened.console if m[0] in ("error", "pageerror")]
    assert errors == []
    assert opened.dialogs == []


def test_the_map_is_drawn(opened: Opened, tmp_path: Path):
    from matplotlib.image import imread

    opened.page.locator("#map").scroll_into_view_if_needed()
    opened.page.wait_for_timeout(300)
    shot = tmp_path / "map.png"
    opened.page.locator("#map-canvas").screenshot(path=str(shot))
    pixels = imread(shot)[..., :3]
    drawn = np.any(pixels < 0.9, axis=-1)  # the background is white
    assert drawn.sum() > 200
    assert len(np.unique(pixels[drawn].round(2), axis=0)) > 3  # coloured by the score, not one colour


def test_hovering_a_point_shows_its_id_scores_and_columns(opened: Opened):
    index = opened.index_of("g1-07")
    opened.page.mouse.move(*opened.on_screen(index))
    tooltip = opened.page.locator("#tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    text = tooltip.inner_text()
    assert "g1-07 (train)" in text and "potential_difficulty_score" in text
    assert "label 1" in text  # a --data column (g1-07 is row 37)


def test_a_lasso_around_a_group_downloads_exactly_its_ids(opened: Opened):
    page = opened.page
    corners = np.array([opened.on_screen(opened.index_of(i)) for i in group_ids(2)])
    (x0, y0), (x1, y1) = corners.min(axis=0) - 25, corners.max(axis=0) + 25
    page.locator("#lasso-mode").click()
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0)):
        page.mouse.move(x, y, steps=12)
        page.wait_for_timeout(30)
    page.mouse.up()
    page.wait_for_function("(window.kscoreReport.selected || []).length > 0", timeout=10_000)
    assert "30 points selected" in page.locator("#selection-text").inner_text()
    with page.expect_download() as download:
        page.locator("#download").click()
    path = download.value.path()
    assert sorted(pl.read_csv(path).get_column("id").to_list()) == group_ids(2)


def test_clicking_a_table_row_selects_its_point(opened: Opened):
    row = opened.page.locator("#table-picks tbody tr").first
    point = int(row.get_attribute("data-point"))
    picked = row.locator("td").first.inner_text()
    row.click()
    opened.page.wait_for_function("(window.kscoreReport.selected || []).length === 1", timeout=10_000)
    assert opened.page.evaluate("window.kscoreReport.selected") == [point]
    assert opened.index_of(picked) == point
    assert "1 point selected" in opened.page.locator("#selection-text").inner_text()


def test_hostile_ids_are_text_everywhere_and_run_nothing(opened: Opened):
    hardest = opened.page.locator("#table-hardest tbody td:first-child").all_inner_texts()
    assert set(HOSTILE_IDS) <= set(hardest)
    index = opened.index_of(HOSTILE_IDS[0])
    opened.page.mouse.move(*opened.on_screen(index))
    opened.page.locator("#tooltip").wait_for(state="visible", timeout=10_000)
    opened.page.wait_for_timeout(200)
    # the tooltip names the nearest point, which may be a neighbour: both are text either way
    assert opened.page.locator("#tooltip img").count() == 0
    assert opened.dialogs == []
    assert opened.page.evaluate("document.querySelectorAll('script').length") == 4


def test_the_tables_are_there_with_javascript_off(browser: Any, page_file: Path):
    view = Opened(browser, page_file, javascript=False)
    try:
        rows = view.page.locator("#table-hardest tbody tr")
        assert rows.count() == 32  # all 32 reference points (--top 40)
        assert view.page.locator("#table-picks tbody tr").count() == 5
        assert view.page.locator("noscript").count() == 1
        # one line where the map would be: no empty frame, no controls that do nothing
        assert not view.page.locator("#map-canvas").is_visible()
        assert not view.page.locator("#color-by").is_visible()
        assert "The map needs JavaScript" in view.page.locator("#map").inner_text()
        assert view.requests == [view.url] and view.dialogs == []
    finally:
        view.close()


def test_a_large_map_draws_a_draft_while_moving_and_everything_at_rest(
    browser: Any, page_file: Path, monkeypatch
):
    import kscore
    from kscore import html_page

    monkeypatch.setattr(html_page, "DRAFT_POINTS", 20)  # 122 points: a draft of every 7th while moving
    out = page_file.parent / "draft.html"
    files = [page_file.parent / name for name in ("diff.parquet", "embed.parquet", "picks.parquet")]
    kscore.report(files, out)
    assert '"draft_points":20' in out.read_text()  # the patch took effect
    view = Opened(browser, out)
    try:
        page = view.page
        rows = page.locator("#table-hardest tbody tr")
        # a point the draft (every 7th) leaves out, so that only the restore can bring it back
        row = next(r for r in rows.all() if int(r.get_attribute("data-point")) % 7)
        point = int(row.get_attribute("data-point"))
        row.click()  # selects the point and flies to it: the view moves
        page.wait_for_function("window.kscoreReport.drafts >= 1", timeout=10_000)
        box = page.locator("#map-canvas").bounding_box()
        page.mouse.move(box["x"] + 300, box["y"] + 300)
        page.mouse.down()
        page.mouse.move(box["x"] + 500, box["y"] + 400, steps=20)
        page.mouse.up()
        page.wait_for_timeout(800)  # at rest: every point again, the selection kept
        assert page.evaluate("window.kscoreReport.scatterplot.get('isPointsFiltered')") is False
        assert page.evaluate("window.kscoreReport.scatterplot.get('selectedPoints')") == [point]
        assert page.evaluate("window.kscoreReport.selected") == [point]
    finally:
        view.close()


def test_image_paths_relative_to_the_report_show_as_thumbnails(browser: Any, page_file: Path):
    from matplotlib.image import imsave

    folder = page_file.parent
    (folder / "img").mkdir(exist_ok=True)
    imsave(folder / "img" / "g0-03.png", np.tile(np.linspace(0, 1, 16), (16, 1)))
    ids = pl.read_parquet(folder / "embed.parquet").get_column("id")
    pl.DataFrame({"id": ids, "image": [f"img/{i}.png" if i == "g0-03" else None for i in ids]}).write_csv(
        folder / "images.csv"
    )
    out = folder / "images.html"
    result = run_kscore(
        "report", str(folder / "embed.parquet"), "--data", str(folder / "images.csv"), "--image-col", "image",
        "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 'src="img/' not in out.read_text()  # the path travels in the data, not as markup
    view = Opened(browser, out)
    try:
        view.page.mouse.move(*view.on_screen(view.index_of("g0-03")))
        image = view.page.locator("#tooltip img")
        image.wait_for(state="visible", timeout=10_000)
        view.page.wait_for_function("document.querySelector('#tooltip img').complete", timeout=10_000)
        assert view.page.evaluate("document.querySelector('#tooltip img').naturalWidth") == 16
        assert (
            view.page.evaluate("document.querySelector('#tooltip img').getAttribute('src')")
            == "img/g0-03.png"
        )
        assert [m for m in view.console if m[0] in ("error", "pageerror")] == []
    finally:
        view.close()


def test_without_webgl_the_page_says_so_and_the_tables_still_sort(playwright: Any, page_file: Path):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--disable-webgl"])
    try:
        page = browser.new_page()
        page.goto(page_file.resolve().as_uri())
        page.wait_for_function("window.kscoreReport && window.kscoreReport.error", timeout=30_000)
        assert page.locator("#map-note").inner_text() == (
            "The map needs WebGL, which this browser does not offer here; the summary and the tables "
            "do not need it."
        )
        assert not page.locator("#map-canvas").is_visible() and not page.locator("#color-by").is_visible()
        header = page.locator("#table-hardest thead th").nth(1)  # difficulty_score
        header.click()  # ascending
        values = [float(v) for v in page.locator("#table-hardest tbody td:nth-child(2)").all_inner_texts()]
        assert values == sorted(values) and len(values) == 32
    finally:
        browser.close()


def test_the_map_starts_on_the_first_screen(browser: Any, page_file: Path):
    """At 1400x900 (a laptop's window), the map's canvas starts above the fold: the first thing a
    newcomer sees is where to look, before the summary's tables."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(page_file.resolve().as_uri())
        page.wait_for_function("window.kscoreReport && window.kscoreReport.ready", timeout=60_000)
        box = page.locator("#map-canvas").bounding_box()
        assert box is not None and box["y"] < 900 - 200, box  # at least 200 px of it on the first screen
        assert page.locator("#color-by").bounding_box()["y"] < box["y"]
    finally:
        context.close()


@pytest.fixture(scope="module")
def sample_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's report, as the README's tour makes it (PCA for the map: the page is the same
    whatever the reducer)."""
    from .conftest import ROOT

    folder = tmp_path_factory.mktemp("sample")
    for model in ("forest", "knn", "logreg"):
        (folder / f"results_{model}.csv").write_bytes(
            (ROOT / f"sample_data/results_{model}.csv").read_bytes()
        )
    steps = [
        ["difficulty", "results_forest.csv", "results_knn.csv", "results_logreg.csv", "-c",
         str(ROOT / "configs/quality_standard.yaml"), "-o", "difficulty_scores.parquet"],
        ["embed-scores", str(ROOT / "sample_data/embeddings.parquet"), "--reducer", "pca", "--difficulty",
         "difficulty_scores.parquet", "-o", "embed_scores.parquet"],
        ["report", "-o", "report.html"],
    ]  # fmt: skip
    for step in steps:
        result = run_kscore(*step, "-q", cwd=folder)
        assert result.returncode == 0, result.stderr
    return folder / "report.html"


@pytest.fixture
def sample(browser: Any, sample_page: Path) -> Iterator[Opened]:
    view = Opened(browser, sample_page)
    view.page.set_viewport_size({"width": 1400, "height": 900})
    yield view
    view.close()


def test_the_colour_selector_says_what_its_score_means_and_which_end_is_worse(sample: Opened):
    page = sample.page
    meanings = page.evaluate("JSON.parse(document.getElementById('kscore-header').textContent).map.meanings")
    options = page.locator("#color-by option").all_inner_texts()
    assert set(options) == set(meanings) and len(options) >= 6
    seen = set()
    for name in options:
        page.select_option("#color-by", name)
        page.wait_for_function("(n) => window.kscoreReport.colour.name === n", arg=name)
        line = page.locator("#color-meaning").inner_text()
        assert line == meanings[name]["means"] and line not in seen
        seen.add(line)
        legend = page.locator("#legend").inner_text()
        assert f"\u2190 {meanings[name]['low']}" in legend and f"{meanings[name]['high']} \u2192" in legend
    page.select_option("#color-by", "difficulty_score")
    page.wait_for_function("window.kscoreReport.colour.name === 'difficulty_score'")
    assert "higher is harder" in page.locator("#color-meaning").inner_text()
    assert "harder \u2192" in page.locator("#legend").inner_text()
    page.select_option("#color-by", "representation_score")
    page.wait_for_function("window.kscoreReport.colour.name === 'representation_score'")
    assert "\u2190 less covered" in page.locator("#legend").inner_text()


def test_reference_points_are_drawn_grey_and_named_as_such(sample: Opened, tmp_path: Path):
    from matplotlib.image import imread

    page = sample.page
    page.select_option("#color-by", "potential_difficulty_score")
    page.wait_for_function("window.kscoreReport.colour.name === 'potential_difficulty_score'")
    reference = page.evaluate("window.kscoreReport.data.train.filter((t) => t === 0).length")
    assert reference == 719 and page.evaluate("window.kscoreReport.colour.grey") == reference
    legend = page.locator("#legend").inner_text()
    assert "grey: reference points (validation/test); this score is for train points" in legend
    assert "no value" not in legend
    page.wait_for_timeout(300)
    shot = tmp_path / "map.png"
    page.locator("#map-canvas").screenshot(path=str(shot))
    pixels = (imread(shot)[..., :3] * 255).round()
    grey = np.all(np.abs(pixels - np.array([0xA3, 0xAA, 0xB2])) <= 6, axis=-1)
    assert grey.sum() > 200  # the reference points are there, in the neutral grey


def test_the_colour_scale_is_clipped_to_the_middle_96_percent(sample: Opened):
    page = sample.page
    page.select_option("#color-by", "representation_score")
    page.wait_for_function("window.kscoreReport.colour.name === 'representation_score'")
    values = np.array(
        page.evaluate(
            """() => { const r = window.kscoreReport, d = r.data, out = [];
            const spec = JSON.parse(document.getElementById('kscore-header').textContent).map.buffers
              .find((b) => b.name === 'representation_score');
            for (let i = 0; i < d.train.length; i++) if (d.representation_score[i] !== 65535)
              out.push(spec.min + d.representation_score[i] * (spec.max - spec.min) / 65534);
            return out; }"""
        )
    )
    colour = page.evaluate("window.kscoreReport.colour")
    low, high = (float(colour[k].split(" ")[-1]) for k in ("low", "high"))
    assert colour["low"].startswith("\u2264") and colour["high"].startswith("\u2265")
    ordered = np.sort(values)
    assert low == pytest.approx(ordered[round(0.02 * (len(values) - 1))], rel=1e-3)
    assert high == pytest.approx(ordered[round(0.98 * (len(values) - 1))], rel=1e-3)
    assert values.min() < low and high < values.max()  # an outlier no longer sets the scale


def test_the_sample_tables_keep_differing_values_apart_and_show_label_and_predictions(sample: Opened):
    page = sample.page
    for table in ("least_represented", "highest_potential"):
        cells = page.locator(f"#table-{table} tbody td.num")
        texts, exact = cells.all_inner_texts(), [c.get_attribute("data-value") for c in cells.all()]
        columns = len(page.locator(f"#table-{table} thead th").all()) - 2  # id and split are text
        for column in range(columns):
            shown = texts[column::columns]
            values = exact[column::columns]
            assert len(set(shown)) == len(set(values)), (table, column, shown)
    headers = page.locator("#table-hardest thead th").all_inner_texts()
    assert headers[2:6] == ["label", "predicted (forest)", "predicted (knn)", "predicted (logreg)"]
    first = page.locator("#table-hardest tbody tr").first.locator("td").all_inner_texts()
    assert first[2] != "-" and all(p != "-" for p in first[3:6])
