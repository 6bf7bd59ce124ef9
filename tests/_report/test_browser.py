"""The report in a real headless browser (Debian's chromium, driven through chromedriver):
it renders without console errors, holds every finding, sorts, filters, searches, follows
evidence links, and prints to PDF with repeated table headers and unsplit rows.

Skipped when chromium, chromedriver or selenium is missing, unless
AUDITKIT_REQUIRE_ALL_SERVERS is set (CI sets it): then it fails.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from _scenario import ORDERS, plant_orders

import auditkit as ak
from auditkit._findings import SEVERITIES


def _missing(what: str) -> None:
    if os.environ.get("AUDITKIT_REQUIRE_ALL_SERVERS"):
        pytest.fail(f"AUDITKIT_REQUIRE_ALL_SERVERS is set: {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        _missing("chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(r, tmp_path, browser):
    plant_orders(r)
    result = ak.report(r, ORDERS, output=tmp_path)
    browser.get(result.html.as_uri())
    return browser, result.findings


def _visible(driver) -> list[Any]:
    return [
        row
        for row in driver.find_elements("css selector", "#findings tbody tr")
        if row.is_displayed()
    ]


def _column(driver, index: int) -> list[str]:
    return [row.find_elements("css selector", "td")[index].text for row in _visible(driver)]


def test_it_renders_every_finding_without_console_errors(page):
    driver, findings = page
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    assert driver.find_element("css selector", ".verdict .word").text == "FAIL"
    assert len(_visible(driver)) == len(findings)
    ids = _column(driver, 4)
    assert ids == [("" if pd.isna(v) else v) for v in findings["id"]]
    shown = driver.find_element("id", "shown").text
    assert shown == f"{len(findings)} of {len(findings)} shown"
    # An ID stays on one line: its cell is as tall as a one-line cell.
    cell = driver.find_element("css selector", "#findings td.id:not(:empty)")
    assert cell.value_of_css_property("white-space") == "nowrap"


def test_sorting_by_a_header(page):
    driver, findings = page
    header = driver.find_element("xpath", "//table[@id='findings']//th[text()='ID']")
    header.click()
    ids = [i for i in _column(driver, 4) if i]
    keyed = [tuple(int(p) for p in i.split("-")) for i in ids]
    assert keyed == sorted(keyed) and len(ids) == findings["id"].notna().sum()
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    keyed = [tuple(int(p) for p in i.split("-")) for i in _column(driver, 4) if i]
    assert keyed == sorted(keyed, reverse=True)
    severity = driver.find_element("xpath", "//table[@id='findings']//th[text()='severity']")
    severity.click()
    ranks = [SEVERITIES.index(s) for s in _column(driver, 1)]
    assert ranks == sorted(ranks) and len(set(ranks)) >= 3


def test_filtering_by_severity_and_check_and_searching(page):
    driver, findings = page
    driver.find_element("css selector", "input.sev[value=warning]").click()
    assert len(_visible(driver)) == (findings["severity"] != "warning").sum()
    assert "warning" not in _column(driver, 1)
    driver.find_element("css selector", "input.sev[value=warning]").click()
    select = driver.find_element("id", "check-filter")
    select.find_element("css selector", "option[value=clock-skew]").click()
    assert len(_visible(driver)) == (findings["check"] == "clock-skew").sum() > 1
    assert set(_column(driver, 2)) == {"clock-skew"}
    select.find_element("css selector", "option[value='']").click()
    search = driver.find_element("id", "search")
    search.send_keys("order-14")
    text = findings.astype("string").fillna("")
    expected = text.apply(lambda row: row.str.contains("order-14").any(), axis=1).sum()
    assert len(_visible(driver)) == expected >= 1
    assert driver.find_element("id", "shown").text == f"{expected} of {len(findings)} shown"
    # The evidence link's word is not searched: "events" is in no finding's own text.
    search.clear()
    search.send_keys("events")
    expected = text.apply(lambda row: row.str.contains("events").any(), axis=1).sum()
    assert len(_visible(driver)) == expected < len(findings)


def test_following_a_findings_evidence_link(page):
    driver, findings = page
    poison = findings[findings["check"] == "poison-message"].iloc[0]
    row = driver.find_element("css selector", "tr[data-check=poison-message]")
    link = row.find_element("link text", "events")
    target = link.get_attribute("href").split("#", 1)[1]
    link.click()
    assert driver.execute_script("return location.hash") == f"#{target}"
    section = driver.find_element("id", target)
    hit = section.find_element("css selector", "tr.hit")
    assert poison["id"] in hit.text
    # The section links back to its finding.
    back = section.find_element("css selector", "a[href^='#f-']")
    back.click()
    assert driver.execute_script("return location.hash") == back.get_attribute("hash")


def test_printing_to_pdf_keeps_headers_and_rows_whole(page):
    driver, _ = page
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        style = driver.execute_script(
            "var t = document.getElementById('findings');"
            "return [getComputedStyle(t.tHead).display,"
            " getComputedStyle(t.tBodies[0].rows[0]).breakInside,"
            " getComputedStyle(document.querySelector('.controls')).display];"
        )
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert style == ["table-header-group", "avoid", "none"]
    from selenium.webdriver.common.print_page_options import PrintOptions

    pdf = base64.b64decode(driver.print_page(PrintOptions()))
    assert pdf.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
    assert pages >= 3  # every finding, the evidence and the catalogue do not fit on one
