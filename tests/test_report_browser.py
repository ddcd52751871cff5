"""The report in a real browser: Debian's headless Chromium, driven by selenium, from file:// (no server).

Checks what a reader does: hover a point and see its photo, toggle a legend entry, switch the
colouring, open a cluster gallery, search, click a point to open the photo; and that captions,
titles, owners and tags crafted to run script never do (no dialog, no console error).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from photocorpus.corpus import Corpus
from photocorpus.explore.stage import explore
from photocorpus.search_index import SearchIndex
from tests.test_explore_report import INJECTED, PHOTOS, explore_corpus

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # WebGL through SwiftShader (software): Chromium no longer falls back to it without this flag.
    "--enable-unsafe-swiftshader",
    "--window-size=1400,1000",
)


def _require_browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "Debian's chromium and chromium-driver are needed (scripts/install-browser installs them)"
    if os.environ.get("PHOTOCORPUS_REQUIRE_DATA") == "1" or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def start_chromium() -> Any:
    """Headless Debian Chromium with a fresh profile, console logs captured."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='pc-chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_for(condition: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def report_index(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    root = explore_corpus(tmp_path_factory.mktemp("explore"), instany_images)
    with Corpus.open(root) as corpus:
        tagged = [
            int(r[0])
            for r in corpus.conn.execute("SELECT id FROM photos WHERE tags LIKE '%coffee%' ORDER BY id")
        ]
        # A precomputed index as the learn stage would hand it over; its queries are user text too.
        search = SearchIndex(
            model="test-index", queries={"coffee": tagged, "<script>alert(6)</script>": tagged[:2]}
        )
        result = explore(corpus, name="browser", search=search)
    return result.index_html


@pytest.fixture(scope="module")
def page(report_index: Path) -> Iterator[Any]:
    driver = start_chromium()
    try:
        driver.get(report_index.as_uri())
        wait_for(
            lambda: driver.execute_script("return !!(window.photocorpusReport && photocorpusReport.ready)"),
            what="the report to become interactive",
        )
        yield driver
    finally:
        driver.quit()


def move_mouse(driver: Any, x: float, y: float) -> None:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    builder = ActionBuilder(driver)
    builder.pointer_action.move_to_location(round(x), round(y))
    builder.perform()


def isolated_point(driver: Any, candidates: list[int], map_index: int = 0) -> tuple[int, list[float]]:
    """A candidate point with no other point within 8 px on screen (so hovering picks exactly it)."""
    driver.execute_script("window.scrollTo(0, 0)")
    positions = driver.execute_script(
        "var r = photocorpusReport, out = [];"
        "for (var i = 0; i < r.n; i++) out.push(r.screenPosition(arguments[0], i));"
        "return out;",
        map_index,
    )
    height = driver.execute_script("return window.innerHeight")
    for i in candidates:
        x, y = positions[i]
        if y > height - 10:
            continue
        if all((x - a) ** 2 + (y - b) ** 2 > 64 for j, (a, b) in enumerate(positions) if j != i):
            return i, positions[i]
    raise AssertionError("no isolated point to hover")


def hover(driver: Any, point: int, xy: list[float]) -> None:
    move_mouse(driver, 2, 2)
    wait_for(lambda: driver.execute_script("return photocorpusReport.hovered == null"), what="un-hover")
    move_mouse(driver, *xy)


def report_index_injected_ids(driver: Any) -> list[int]:
    """Catalog ids of the photos whose caption was crafted to run script."""
    corpus_dir = Path(driver.execute_script("return location.pathname")).parents[2]
    with Corpus.open(corpus_dir) as corpus:
        return [
            int(r[0]) for r in corpus.conn.execute("SELECT id FROM photos WHERE caption LIKE '%onerror%'")
        ]


def photo_ids(driver: Any) -> list[int]:
    return driver.execute_script(
        "var r = photocorpusReport, out = [];for (var i = 0; i < r.n; i++) out.push(r.photoId(i));return out;"
    )


def test_hover_shows_the_thumbnail_and_the_caption_as_text(page: Any) -> None:
    ids = photo_ids(page)
    assert len(ids) == PHOTOS
    with_injected = [ids.index(pid) for pid in report_index_injected_ids(page)]
    assert with_injected, "the injected captions are in the report"
    point, xy = isolated_point(page, with_injected)
    hover(page, point, xy)
    wait_for(lambda: page.execute_script("return photocorpusReport.hovered") == point, what="the hover")
    img = page.find_element("id", "pc-tt-img")
    wait_for(
        lambda: page.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0,
        what="the thumbnail to load",
    )
    assert img.get_attribute("src").endswith(f"/{ids[point]}.jpg")
    assert page.find_element("id", "pc-tooltip").is_displayed()
    caption = wait_for(lambda: page.find_element("id", "pc-tt-caption").text, what="the caption")
    assert caption.startswith('<img src=x onerror="window.__pwned=1;alert(1)">')  # shown as text
    facts = page.find_element("id", "pc-tt-facts").text
    assert "label" in facts and "cluster (efficientnet-lite0" in facts and "top ImageNet label" in facts
    assert "<b onmouseover=alert(4)>owner</b>" in facts


def test_every_tooltip_fact_is_visible_in_full(page: Any) -> None:
    """Long facet names (``cluster (efficientnet-lite0, k = 25)``, ``top ImageNet label (...)``) once
    squeezed their values to zero width; every value must now be on screen, whole, inside the tooltip."""
    ids = photo_ids(page)
    point, xy = isolated_point(page, list(range(len(ids))))
    hover(page, point, xy)
    wait_for(lambda: page.execute_script("return photocorpusReport.hovered") == point, what="the hover")
    rows = page.execute_script(
        "var tip = document.getElementById('pc-tooltip').getBoundingClientRect(), out = [];"
        "document.querySelectorAll('#pc-tt-facts > div').forEach(function (row) {"
        "  var dt = row.querySelector('dt'), dd = row.querySelector('dd'), r = dd.getBoundingClientRect();"
        "  out.push([dt.textContent, dd.textContent, r.width, dd.scrollWidth - dd.clientWidth,"
        "            r.left >= tip.left - 1 && r.right <= tip.right + 1]);"
        "});"
        "return out;"
    )
    names = [r[0] for r in rows]
    assert any(n.startswith("cluster (efficientnet-lite0") for n in names), names
    assert any(n.startswith("top ImageNet label") for n in names), names
    for name, value, width, clipped, inside in rows:
        assert value and width > 0 and clipped <= 0 and inside, (name, value, width, clipped, inside)


def test_legend_toggle_hides_points_and_shows_them_again(page: Any) -> None:
    codes = page.execute_script("return photocorpusReport.codes()")
    hidden_count = codes.count(0)
    assert 0 < hidden_count < PHOTOS
    first = page.find_elements("css selector", "#pc-legend li .pc-legend-toggle")[0]
    first.click()
    wait_for(
        lambda: page.execute_script("return photocorpusReport.visibleCount()") == PHOTOS - hidden_count,
        what="category 0 to hide",
    )
    assert "pc-off" in page.find_elements("css selector", "#pc-legend li")[0].get_attribute("class")
    assert f"{PHOTOS - hidden_count} of {PHOTOS}" in page.find_element("id", "pc-visible").text.replace(
        ",", ""
    )
    # A hidden point no longer answers the mouse.
    point, xy = isolated_point(page, [i for i, c in enumerate(codes) if c == 0])
    hover(page, point, xy)
    time.sleep(0.5)
    assert page.execute_script("return photocorpusReport.hovered") is None
    assert not page.find_element("id", "pc-tooltip").is_displayed()
    first.click()
    wait_for(lambda: page.execute_script("return photocorpusReport.visibleCount()") == PHOTOS, what="unhide")
    # "only" isolates one category.
    page.find_elements("css selector", "#pc-legend li .pc-legend-only")[1].click()
    wait_for(
        lambda: page.execute_script("return photocorpusReport.visibleCount()") == codes.count(1),
        what="isolate",
    )
    page.find_element("id", "pc-show-all").click()
    wait_for(
        lambda: page.execute_script("return photocorpusReport.visibleCount()") == PHOTOS, what="show all"
    )


def test_colour_by_switch_rebuilds_the_legend(page: Any) -> None:
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "pc-color-by")).select_by_value("label")
    wait_for(lambda: page.execute_script("return photocorpusReport.facet()") == "label", what="facet")
    names = [e.text for e in page.find_elements("css selector", "#pc-legend .pc-legend-name")]
    assert sorted(names) == ["brooklyn", "nyc"]
    Select(page.find_element("id", "pc-color-by")).select_by_value("cluster:efficientnet-lite0")
    wait_for(
        lambda: page.execute_script("return photocorpusReport.facet()") == "cluster:efficientnet-lite0",
        what="facet back",
    )


def test_cluster_gallery_opens_with_its_photos(page: Any) -> None:
    buttons = page.find_elements("css selector", "#g0 .pc-cluster-open")
    assert len(buttons) >= 4
    galleries = page.find_elements("css selector", "#g0 .pc-gallery")
    assert not any(g.is_displayed() for g in galleries)
    page.execute_script("arguments[0].scrollIntoView()", buttons[1])
    buttons[1].click()
    gallery = page.find_element("id", buttons[1].get_attribute("data-gallery"))
    assert gallery.is_displayed()
    page.execute_script("arguments[0].scrollIntoView()", gallery)
    images = gallery.find_elements("css selector", "img")
    assert 1 <= len(images) <= 12
    wait_for(
        lambda: all(page.execute_script("return arguments[0].naturalWidth", im) > 0 for im in images),
        what="gallery thumbnails",
    )
    size = int(buttons[1].get_attribute("innerText").split("·")[1].split()[0])
    selected = page.execute_script("return photocorpusReport.selectedCount()")
    assert selected == size  # the cluster's photos are highlighted on the map
    assert "Top ImageNet labels" in gallery.text


def test_search_box_finds_precomputed_queries(page: Any) -> None:
    page.execute_script("window.scrollTo(0, 0)")
    box = page.find_element("id", "pc-search-input")
    box.clear()
    box.send_keys("coffee")
    page.find_element("css selector", "#pc-search button[type=submit]").click()
    status = wait_for(lambda: page.find_element("id", "pc-search-status").text, what="search status")
    expected = page.execute_script("return window.PHOTOCORPUS_SEARCH.queries['coffee'].length")
    assert expected > 0 and status.startswith(f"{expected} photos")
    assert page.execute_script("return photocorpusReport.selectedCount()") == expected
    assert len(page.find_elements("css selector", "#pc-search-grid img")) == min(expected, 24)
    options = [
        o.get_attribute("value") for o in page.find_elements("css selector", "#pc-search-queries option")
    ]
    assert "<script>alert(6)</script>" in options  # offered as text
    box.clear()
    box.send_keys("not indexed")
    page.find_element("css selector", "#pc-search button[type=submit]").click()
    wait_for(
        lambda: "No precomputed results" in page.find_element("id", "pc-search-status").text, what="miss"
    )
    page.find_element("id", "pc-search-clear").click()


def test_clicking_a_point_opens_the_photo(page: Any) -> None:
    page.execute_script("window.scrollTo(0, 0)")
    point, xy = isolated_point(page, list(range(PHOTOS)))
    hover(page, point, xy)
    wait_for(
        lambda: page.execute_script("return photocorpusReport.hovered") == point, what="hover before click"
    )
    before = set(page.window_handles)
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(page).click().perform()
    new = wait_for(lambda: set(page.window_handles) - before, what="a new tab")
    main = page.current_window_handle
    page.switch_to.window(new.pop())
    url = wait_for(lambda: page.current_url if page.current_url.startswith("file:") else "", what="photo url")
    assert url.endswith(".jpg") and "/images/" in url
    page.close()
    page.switch_to.window(main)


def test_injected_text_never_ran(page: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.text  # noqa: B018 - reading it is the check
    assert page.execute_script("return window.__pwned === undefined")
    severe = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    source = page.page_source
    assert INJECTED["title"] not in source and "<svg onload" not in source
