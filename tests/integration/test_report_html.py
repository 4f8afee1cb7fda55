"""The HTML pack opens in headless Debian Chromium, offline: charts render, nothing is fetched.

Chromium itself phones home (update checks, accounts) even with background networking off, so
the net log is read for requests the *page* started: those carry the file:// page's opaque
origin as initiator. A control page with remote references proves the check sees them.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from collectors.store.db import Store
from reports.command import render_report
from tests.bed.require import CHROMIUM, require_chromium
from tests.unit.test_reports_history import RATES, monthly_history

pytestmark = pytest.mark.chromium

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND"]
WINDOW = (1280, 3000)


def _chromium(tmp: Path, page: Path, *extra: str) -> tuple[str, list[dict[str, str]]]:
    """Run Chromium on `page`; return stdout and the page-initiated requests of its net log."""
    profile = tmp / f"profile-{page.stem}"
    netlog = tmp / f"net-{page.stem}.json"
    res = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}",
         *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    page_requests = [
        e["params"] for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in e.get("params", {})
        and e["params"].get("initiator") != "not an origin"  # the browser's own traffic
    ]
    return res.stdout, page_requests


@pytest.fixture(scope="module")
def html_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    path, end = monthly_history(tmp / "m.duckdb", [4, 5, 8, 8])
    out = tmp / "pack.html"
    with Store.open(path, read_only=True) as store:
        render_report("all", store.con, start=datetime(2024, 1, 1), end=end, now=end,
                      rates=RATES, fmt="html", output_path=out)
    return out


def test_html_is_self_contained(html_file: Path) -> None:
    text = html_file.read_text()
    for needle in ("http:", "https:", "<script", "<link", "<img", "<iframe", "url(", "@import",
                   "src=", "srcset", "//fonts", "@font-face"):
        assert needle not in text.lower(), needle
    assert text.count("<svg") >= 3


def test_chromium_renders_charts_and_fetches_nothing(html_file: Path, tmp_path: Path) -> None:
    require_chromium()
    dom, requests = _chromium(tmp_path, html_file, "--dump-dom")
    assert requests == []
    svgs = re.findall(r"<svg\b.*?</svg>", dom, flags=re.S)
    titles = [re.search(r"<title>(.*?)</title>", s).group(1) for s in svgs]  # type: ignore[union-attr]
    assert any(t.startswith("Allocation vs utilization") for t in titles)
    assert any(t.startswith("Forecast:") for t in titles)
    assert any(t.startswith("Top idle wasters") for t in titles)
    for svg, title in zip(svgs, titles, strict=True):
        lines = re.findall(r'<path d="M([^"]+)"', svg)
        bars = re.findall(r'<rect x="[^"]+" y="[^"]+" width="([\d.]+)"', svg)
        if title.startswith("Top idle wasters"):
            assert len(bars) >= 4 and all(float(w) > 0 for w in bars), title
        else:
            assert lines and max(p.count("L") for p in lines) >= 3, title
    assert "<table>" in dom and "above the ceiling since 2024-03" in dom

    shot = tmp_path / "shot.png"
    _, requests = _chromium(tmp_path, html_file, f"--screenshot={shot}",
                            f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert requests == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == WINDOW
    assert len(data) > 50_000  # a blank page of this size compresses to a few kB


def test_the_network_check_sees_a_page_that_fetches(tmp_path: Path) -> None:
    require_chromium()
    page = tmp_path / "control.html"
    page.write_text('<!doctype html><img src="http://example.invalid/x.png">'
                    '<div style="background:url(https://example.org/a.png)">x</div>')
    _, requests = _chromium(tmp_path, page, "--dump-dom")
    urls = sorted(r["url"] for r in requests)
    assert urls == ["http://example.invalid/x.png", "https://example.org/a.png"]


class _Dom(HTMLParser):
    """The dumped DOM as (tag, class, id, text) in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[list[str]] = []
        self._open: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        node = [tag, a.get("class") or "", a.get("id") or "", ""]
        self.nodes.append(node)
        if tag not in ("br", "meta", "img", "input", "path", "rect", "line", "circle"):
            self._open.append(node)

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for node in self._open:
            node[3] += data


def test_pack_headline_above_first_chart_and_chargeback_totals(html_file: Path,
                                                               tmp_path: Path) -> None:
    """In the DOM Chromium built: the purchase answer is the first thing after the title
    (above every chart), again at the top of the forecast section, and the chargeback
    table ends with a Total row in its footer; column titles are for people."""
    require_chromium()
    dom, _ = _chromium(tmp_path, html_file, "--dump-dom")
    parsed = _Dom()
    parsed.feed(dom)
    nodes = parsed.nodes
    tags = [n[0] for n in nodes]
    headline = next(i for i, n in enumerate(nodes) if "headline" in n[1])
    assert headline < tags.index("svg"), "the purchase headline comes before the first chart"
    text = nodes[headline][3]
    assert re.match(r"(Buy \d+ x .+ in \S+ by (now|\d{4}-\d\d) \(upper band \d+\): [\d,]+ EUR/"
                    r"month amortized|No GPUs to buy through \d{4}-\d\d)", text), text
    forecast = next(i for i, n in enumerate(nodes) if n[2] == "forecast")
    first_chart = tags.index("svg", forecast)
    assert any("headline" in n[1] and n[3] == text for n in nodes[forecast:first_chart])

    charge = next(i for i, n in enumerate(nodes) if n[2] == "chargeback")
    table = tags.index("table", charge)
    end = tags.index("section", table) if "section" in tags[table:] else len(nodes)
    heads = [n[3] for n in nodes[table:end] if n[0] == "th"]
    assert "GPU-hours idle" in heads and "Total cost (EUR)" in heads, heads
    foot = tags.index("tfoot", table)
    assert foot < end and tags.index("tbody", table) < foot
    total_cells = [n[3] for n in nodes[foot:end] if n[0] == "td"]
    assert total_cells[0] == "Total" and any(re.fullmatch(r"[\d,]+\.\d\d", c)
                                             for c in total_cells[1:]), total_cells
