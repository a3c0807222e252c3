"""The HTML report in a real browser (headless Chromium through Selenium): the numbers shown are the
records', tabs switch, columns sort, a click shows a score's provenance, dark mode applies, and nothing
overflows a laptop screen. Skipped, saying why, where Chromium or its driver is missing (`.ci/run`
installs both from Debian's packages)."""

from __future__ import annotations

import shutil

import pytest

from harness.results.report import write_report

from .conftest import fake_record, scores, write_records

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="no Chromium and chromedriver here (apt-get install chromium chromium-driver)")]


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,768"):  # a laptop screen
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # the local driver: no download
    yield driver
    driver.quit()


@pytest.fixture
def page(tmp_path):
    """Three retrievers on two datasets with two metrics; 'good' leads everywhere, 'base' trails."""
    recs = []
    for ds, seed in [("beir/scifact", 1), ("beir/nfcorpus", 2)]:
        base, recall = scores(seed), scores(seed + 5)
        for name, shift in [("base", 0.0), ("same", 0.05), ("good", 0.3)]:
            recs.append(fake_record(name, ds, {"ndcg@10": {q: min(1.0, v + shift) for q, v in base.items()},
                                               "recall@100": {q: min(1.0, v + shift) for q, v in recall.items()}}))
    folder = write_records(tmp_path / "results", recs)
    path = write_report(folder, tmp_path / "report.html", baseline="base", pair=["base", "good"])
    return path, {(r.label, r.dataset, m): v for r in recs for m, v in r.metrics.items()}


def _rows(driver, metric):
    from selenium.webdriver.common.by import By

    table = driver.find_element(By.CSS_SELECTOR, f'table.leaderboard[data-metric="{metric}"]')
    heads = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    body = [[td.text.strip() for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    return heads, body


def test_report_in_a_browser(browser, page, tmp_path):
    from selenium.webdriver.common.by import By

    path, metrics = page
    browser.get(path.as_uri())
    # the numbers shown are the records' (marks of significance after them)
    heads, body = _rows(browser, "ndcg@10")
    assert heads[:3] == ["retriever", "beir/nfcorpus", "beir/scifact"]
    for row in body:
        for ds, cell in zip(heads[1:3], row[1:3], strict=True):
            assert cell.split()[0] == f"{metrics[(row[0], ds, 'ndcg@10')]:.4f}"
    # sorting: a click on a dataset's column puts the best first, a second click the worst
    header = browser.find_element(By.XPATH, '//table[@data-metric="ndcg@10"]//th[text()="beir/scifact"]')
    header.click()
    assert [r[0] for r in _rows(browser, "ndcg@10")[1]] == ["good", "same", "base"]
    header.click()
    assert [r[0] for r in _rows(browser, "ndcg@10")[1]] == ["base", "same", "good"]
    # tabs: one per metric, only the chosen one shown
    ndcg = browser.find_element(By.CSS_SELECTOR, 'section[data-tab="ndcg@10"]')
    recall = browser.find_element(By.CSS_SELECTOR, 'section[data-tab="recall@100"]')
    assert ndcg.is_displayed() and not recall.is_displayed()
    browser.find_element(By.CSS_SELECTOR, 'nav.tabs button[data-tab="recall@100"]').click()
    assert recall.is_displayed() and not ndcg.is_displayed()
    heads, body = _rows(browser, "recall@100")
    assert {r[0]: r[2].split()[0] for r in body} == {n: f"{metrics[(n, 'beir/scifact', 'recall@100')]:.4f}"
                                                     for n in ("base", "same", "good")}
    # provenance: a click on a score opens its record's settings and fingerprint; a click elsewhere closes it
    panel = browser.find_element(By.ID, "provenance")
    assert not panel.is_displayed()
    recall.find_element(By.CSS_SELECTOR, "td.cell").click()
    assert panel.is_displayed() and '"fingerprint"' in panel.text and '"retriever"' in panel.text
    browser.find_element(By.TAG_NAME, "h1").click()
    assert not panel.is_displayed()
    # significance marks against the baseline: 'good' is far above it on both datasets
    assert all("\u25b2" in cell for r in body if r[0] == "good" for cell in r[1:3])
    # a laptop screen: the page itself never scrolls sideways (wide tables scroll inside their box)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.save_screenshot(str(tmp_path / "light.png"))
    # dark mode follows the system's setting
    background = "return getComputedStyle(document.body).backgroundColor"
    assert browser.execute_script(background) == "rgb(255, 255, 255)"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    assert browser.execute_script(background) == "rgb(20, 23, 29)"
    assert (tmp_path / "light.png").stat().st_size > 10_000


def test_the_efficiency_section_in_a_browser(browser, tmp_path):
    """The efficiency table's figures as the records hold them (a dash for a p50 a retriever did not measure,
    sorted last), its plot drawn and no wider than the screen, the devices named under it."""
    from selenium.webdriver.common.by import By

    recs = []
    for name, device, seed, timings in [
            ("bm25", "cpu (JVM)", 1, {"search_ms_per_query": 2.1, "search_ms_p50": 1.8, "search_ms_p95": 4.4,
                                      "latency_queries": 60, "latency_method": "each query timed"}),
            ("dense", "cpu", 2, {"search_ms_per_query": 6.5, "latency_method": "batch mean only"}),
            ("dense-gpu", "cuda:0", 3, {"search_ms_per_query": 0.4, "search_ms_p50": 3.2, "search_ms_p95": 3.9,
                                        "latency_queries": 60, "latency_method": "60 queries one at a time"})]:
        rec = fake_record(name, "beir/scifact", {"ndcg@10": scores(seed)})
        rec.device, rec.timings = device, {"device": device, "index_bytes": 2**23, "peak_rss_mb": 900.0, **timings}
        recs.append(rec)
    path = write_report(write_records(tmp_path / "results", recs), tmp_path / "report.html")
    browser.get(path.as_uri())
    table = browser.find_element(By.CSS_SELECTOR, "table.efficiency")
    heads = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]

    def rows():
        return [[td.text.strip() for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    p50 = heads.index("p50 ms")
    assert {r[0]: (r[3], r[p50]) for r in rows()} == {"bm25": ("cpu (JVM)", "1.80"), "dense": ("cpu", "—"),
                                                       "dense-gpu": ("cuda:0", "3.20")}
    header = table.find_element(By.XPATH, './/th[text()="p50 ms"]')
    header.click()
    header.click()  # ascending: the fastest first, the unmeasured last
    assert [r[0] for r in rows()] == ["bm25", "dense-gpu", "dense"]
    image = browser.find_element(By.CSS_SELECTOR, "figure.efficiency img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)
    assert "measured on 2 devices (cpu, cuda:0)" in image.get_attribute("alt")
    assert "measured on 2 devices (cpu, cuda:0)" in browser.find_element(By.CSS_SELECTOR,
                                                                          "figure.efficiency figcaption").text
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert image.size["width"] <= browser.execute_script("return window.innerWidth")
