"""``photocorpus serve`` in real headless Chromium (selenium), against the real app on uvicorn.

The acceptance path of issue #22: filter the grid, open a photo, "more like this", split one duplicate
group and confirm another, correct a label; then ``photocorpus curate`` in a subprocess, after which
the split stays split, the confirmed group stays, and an export carries the corrected label.
Also: keyboard review of 20 duplicate groups, text search with thumbnails that load, captions crafted
to run script shown as inert text. The screenshot in docs/img/serve.png is taken here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_cli
from tests.serve_helpers import GROUPS, RunningServer, build_corpus, catalog_rows, copy_corpus, start_server
from tests.test_report_browser import start_chromium, wait_for


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    return build_corpus(tmp_path_factory.mktemp("serve-built"), instany_images)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[RunningServer]:
    corpus = copy_corpus(built, tmp_path_factory.mktemp("serve-browser") / "corpus")
    running = start_server(corpus, reviewer="tester")
    yield running
    running.stop()


@pytest.fixture()
def fresh_server(
    tmp_path_factory: pytest.TempPathFactory, built: Path, browser: Any
) -> Iterator[RunningServer]:
    """A server on an untouched copy of the corpus, the browser signed in to it."""
    corpus = copy_corpus(built, tmp_path_factory.mktemp("serve-fresh") / "corpus")
    running = start_server(corpus)
    browser.get(f"{running.url}/?token={running.token}")
    wait_for(lambda: browser.current_url.endswith("/grid"), what="the redirect to the grid")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(server: RunningServer) -> Iterator[Any]:
    driver = start_chromium()
    try:
        driver.get(f"{server.url}/?token={server.token}")
        wait_for(lambda: driver.current_url.endswith("/grid"), what="the redirect to the grid")
        yield driver
    finally:
        driver.quit()


def no_alert(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 (raises when there is none)
    except NoAlertPresentException:
        return True
    return False


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def decisions(server: RunningServer, after: int = 0) -> list[tuple[Any, ...]]:
    return catalog_rows(
        server.corpus, "SELECT id, kind, photo_ids, undone_by FROM decisions WHERE id > ? ORDER BY id", after
    )


def last_decision_id(server: RunningServer) -> int:
    return catalog_rows(server.corpus, "SELECT COALESCE(MAX(id), 0) FROM decisions")[0][0]


def group_members(server: RunningServer) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for pid, group in catalog_rows(
        server.corpus, "SELECT photo_id, dup_group FROM curation WHERE dup_group IS NOT NULL"
    ):
        groups.setdefault(group, []).append(pid)
    return {g: sorted(m) for g, m in groups.items()}


def text_of(browser: Any, element_id: str) -> str | None:
    """The element's text, or None while the page is between documents (a reload in flight)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return str(browser.find_element(By.ID, element_id).text)
    except WebDriverException:  # not there yet, stale, or "node does not belong to the document"
        return None


def reloaded(element: Any) -> bool:
    """True once ``element`` belongs to a page the browser has since replaced (a reload happened)."""
    from selenium.common.exceptions import WebDriverException

    try:
        element.is_enabled()
    except WebDriverException:  # stale, or mid-reload "node does not belong to the document"
        return True
    return False


def test_filter_open_more_like_this_split_confirm_relabel_then_curate_keeps_them(
    browser: Any, server: RunningServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # filter the grid: brooklyn photos that are duplicates of another
    browser.get(f"{server.url}/grid")
    browser.find_element(By.NAME, "label").send_keys("brooklyn")
    Select(browser.find_element(By.NAME, "dup")).select_by_visible_text("grouped")
    browser.find_element(By.ID, "pc-apply").click()
    wait_for(lambda: "label=brooklyn" in browser.current_url, what="the filtered grid")
    expected = catalog_rows(
        server.corpus,
        "SELECT COUNT(*) FROM photos p JOIN curation c ON c.photo_id = p.id "
        "WHERE p.primary_label = 'brooklyn' AND c.dup_group IS NOT NULL",
    )[0][0]
    assert int(browser.find_element(By.ID, "pc-count").get_attribute("data-count")) == expected > 0
    cells = browser.find_elements(By.CSS_SELECTOR, "#pc-grid .pc-cell")
    assert len(cells) == expected
    first = int(cells[0].get_attribute("data-id"))

    # open it, then "more like this"
    cells[0].click()
    wait_for(lambda: browser.current_url.endswith(f"/photo/{first}"), what="the photo page")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#pc-neighbours img")) == 12
    browser.find_element(By.ID, "pc-more-like-this").click()
    wait_for(lambda: f"like={first}" in browser.current_url, what="the more-like-this search")
    hits = browser.find_elements(By.CSS_SELECTOR, "#pc-search-hits img")
    assert len(hits) >= 10
    # the photo's own near-duplicate is its nearest neighbour
    members = next(m for m in group_members(server).values() if first in m)
    other = next(m for m in members if m != first)
    assert (
        int(browser.find_elements(By.CSS_SELECTOR, "#pc-search-hits .pc-cell")[0].get_attribute("data-id"))
        == other
    )

    groups = sorted(group_members(server).items())
    (_g1, split_members), (_g2, confirm_members) = groups[0], groups[1]
    before = last_decision_id(server)

    # split one group: open its representative, select the other member, split it off
    browser.get(f"{server.url}/photo/{split_members[0]}")
    member = browser.find_element(
        By.CSS_SELECTOR, f'#pc-dup-group .pc-member[data-id="{split_members[1]}"] small'
    )
    member.click()
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "pc-split-selected").click()
    wait_for(lambda: len(decisions(server, before)) == 1, what="the split decision")
    # the page reloads itself once the decision is answered: let it, or that reload may land after
    # (and undo) the next navigation
    wait_for(lambda: reloaded(page), what="the photo page to reload after the split")
    # confirm another group
    browser.get(f"{server.url}/photo/{confirm_members[0]}")
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "pc-confirm-group").click()
    wait_for(lambda: len(decisions(server, before)) == 2, what="the confirm decision")
    wait_for(lambda: reloaded(page), what="the photo page to reload after the confirm")
    # correct a label
    relabelled = confirm_members[0]
    browser.get(f"{server.url}/photo/{relabelled}")
    field = browser.find_element(By.ID, "pc-new-label")
    field.clear()
    field.send_keys("queens")
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "pc-set-label").click()
    wait_for(lambda: len(decisions(server, before)) == 3, what="the label decision")
    wait_for(lambda: reloaded(page), what="the photo page to reload after the label")
    wait_for(lambda: text_of(browser, "pc-label") == "queens", what="the page to show the new label")
    kinds = [row[1] for row in decisions(server, before)]
    assert kinds == ["split_group", "confirm_group", "set_label"]
    history = browser.find_elements(By.CSS_SELECTOR, "#pc-history li")
    assert any("set_label" in h.text and "tester" in h.text for h in history)

    # a later curate run, in its own process, respects all three
    run_cli("curate", "-C", str(server.corpus), "--redo", "--quiet")
    after = group_members(server)
    assert not any(split_members[0] in m and split_members[1] in m for m in after.values()), (
        "the split stays split"
    )
    assert any(set(confirm_members) <= set(m) for m in after.values()), "the confirmed group stays"
    out = server.corpus.parent / "export.parquet"
    run_cli("export", "parquet", str(out), "-C", str(server.corpus))
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pandas().set_index("photo_id")
    assert table.loc[relabelled, "label"] == "queens"
    assert no_alert(browser) and console_errors(browser) == []


def test_keyboard_review_of_twenty_duplicate_groups(browser: Any, fresh_server: RunningServer) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(f"{fresh_server.url}/review/duplicates?order=largest")
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready") == "1", what="the queue")
    items = browser.find_elements(By.CSS_SELECTOR, ".pc-queue-item")
    assert len(items) == GROUPS
    browser.set_window_size(1400, 1000)
    browser.save_screenshot(str(ROOT / "docs" / "img" / "serve.png"))
    before = last_decision_id(fresh_server)
    expected = [sorted(int(x) for x in i.get_attribute("data-ids").split(",")) for i in items]
    for n in range(GROUPS):
        ActionChains(browser).send_keys("c").perform()
        wait_for(lambda n=n: len(decisions(fresh_server, before)) == n + 1, what=f"decision {n + 1}")
        wait_for(
            lambda n=n: browser.execute_script("return photocorpusServe.current()") == min(n + 1, GROUPS - 1),
            what="the next group",
        )
    made = decisions(fresh_server, before)
    assert [row[1] for row in made] == ["confirm_group"] * GROUPS
    assert [sorted(json.loads(row[2])) for row in made] == expected
    # u undoes the last one, k and j move
    ActionChains(browser).send_keys("u").perform()
    wait_for(lambda: decisions(fresh_server, before)[GROUPS - 1][3] is not None, what="the undo")
    assert browser.execute_script("return photocorpusServe.reviewed()") == GROUPS - 1
    ActionChains(browser).send_keys("k").perform()
    assert browser.execute_script("return photocorpusServe.current()") == GROUPS - 2
    assert console_errors(browser) == []


def test_text_search_shows_thumbnails(browser: Any, server: RunningServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/search")
    box = browser.find_element(By.ID, "pc-q")
    box.send_keys("bridge over the river")
    browser.find_element(By.ID, "pc-search-go").click()
    wait_for(lambda: "q=bridge" in browser.current_url, what="the results")
    images = browser.find_elements(By.CSS_SELECTOR, "#pc-search-hits img")
    assert len(images) >= 10
    for img in images:
        wait_for(
            lambda img=img: (
                browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
            ),
            what="a thumbnail",
        )
    assert "bridge" in browser.find_element(By.ID, "pc-search-method").text


def test_captions_crafted_to_run_script_stay_text(browser: Any, server: RunningServer) -> None:
    from selenium.webdriver.common.by import By

    injected = [
        r[0] for r in catalog_rows(server.corpus, "SELECT id FROM photos WHERE caption LIKE '%onerror%'")
    ]
    assert len(injected) == 2
    for url in (
        "/grid?has_caption=1",
        f"/photo/{injected[0]}",
        f"/photo/{injected[1]}",
        "/review/duplicates",
        "/search?q=pizza",
    ):
        browser.get(server.url + url)
        assert no_alert(browser), url
        assert browser.execute_script("return window.__pwned === undefined"), url
        assert (
            browser.execute_script(
                "return document.querySelectorAll('img[src=\"x\"], svg[onload], b[onmouseover]').length"
            )
            == 0
        ), url
    browser.get(f"{server.url}/photo/{injected[0]}")
    assert browser.find_element(By.ID, "pc-caption").text.startswith(
        '<img src=x onerror="window.__pwned=1;alert(1)">'
    )
    assert browser.find_element(By.ID, "pc-title").text == '"><svg onload=alert(3)>'
    assert console_errors(browser) == []


def test_the_map_draws_and_its_lasso_selection_opens_in_the_grid(browser: Any, server: RunningServer) -> None:
    """The explore report's own report.js and WebGL scatter, served live; a lasso selection (here
    made through the plot's API, as regl-scatterplot reports a lasso) becomes the grid of those ids."""
    from selenium.webdriver.common.by import By

    import photocorpus as pc

    pc.explore_photos(server.corpus, method="pca", compare_raw=False, k=4, name="serve-test")
    browser.get(f"{server.url}/map?features=efficientnet-lite0")
    wait_for(
        lambda: browser.execute_script("return !!(window.photocorpusReport && photocorpusReport.lassoReady)"),
        what="the map",
    )
    n = browser.execute_script("return photocorpusReport.n")
    assert n == catalog_rows(server.corpus, "SELECT COUNT(*) FROM photos")[0][0]
    chosen = browser.execute_script(
        "var r = photocorpusReport; r.maps[0].plot.select([0, 1, 2, 3, 4]);"
        "return [0, 1, 2, 3, 4].map(function (i) { return r.photoId(i); });"
    )
    link = wait_for(
        lambda: (lambda el: el if el.is_displayed() else None)(browser.find_element(By.ID, "pc-lasso-grid")),
        what="the lasso link",
    )
    assert "5 selected" in link.text
    link.click()
    wait_for(lambda: "/grid?ids=" in browser.current_url, what="the grid of the selection")
    shown = sorted(
        int(c.get_attribute("data-id")) for c in browser.find_elements(By.CSS_SELECTOR, "#pc-grid .pc-cell")
    )
    assert shown == sorted(chosen)
    assert console_errors(browser) == []


def test_quality_queue_keys_confirm_and_overrule_flags(browser: Any, server: RunningServer) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/review/quality")
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready") == "1", what="the queue")
    items = browser.find_elements(By.CSS_SELECTOR, ".pc-queue-item")
    flagged = catalog_rows(
        server.corpus, "SELECT COUNT(*) FROM curation WHERE quality_flags NOT IN ('[]', '')"
    )[0][0]
    assert len(items) == flagged > 2
    first, third = (int(items[i].get_attribute("data-ids")) for i in (0, 2))
    before = last_decision_id(server)
    ActionChains(browser).send_keys("n").perform()  # overrule: this photo's quality is fine
    wait_for(lambda: len(decisions(server, before)) == 1, what="the first verdict")
    wait_for(
        lambda: browser.execute_script("return photocorpusServe.current()") == 1, what="the move to the next"
    )
    ActionChains(browser).send_keys("j").perform()  # skip the second
    ActionChains(browser).send_keys("y").perform()  # the flag is right
    wait_for(lambda: len(decisions(server, before)) == 2, what="the second verdict")
    verdicts = catalog_rows(
        server.corpus, "SELECT photo_id, value FROM photo_verdicts WHERE field = 'quality' ORDER BY decision"
    )[-2:]
    assert verdicts == [(first, "true"), (third, "false")]
    wait_for(
        lambda: browser.execute_script("return photocorpusServe.reviewed()") == 2, what="both marked reviewed"
    )
