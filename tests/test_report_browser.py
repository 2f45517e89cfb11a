"""The HTML report in a real headless Chromium: self-contained, error-free, every image shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_reports import make_experiment, make_matrix

from reports.render.html import render_run


def open_report(browser: Any, html: Path) -> tuple[Any, list[str], list[str]]:
    """Load the report; return the page, every URL it requested, and console errors."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def guard(route: Any) -> None:
        # Anything but the file itself or a data: URI would leave the file: refuse it.
        if route.request.url == html.as_uri() or route.request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", guard)
    page.goto(html.as_uri(), wait_until="load")
    return page, requested, errors


def test_report_is_self_contained_and_renders(browser: Any, tmp_path: Path) -> None:
    """No request leaves the file, no console error, every image decodes; a screenshot is kept."""
    run = make_matrix(tmp_path / "run")
    make_experiment(run / "cells" / "threaded-sqlite", store="sqlite", kind="safe",
                    label='sqlite <script>document.title="owned"</script>')
    html = render_run(run, formats=("html",))["html"]
    page, requested, errors = open_report(browser, html)
    try:
        assert requested and all(
            url == html.as_uri() or url.startswith("data:") for url in requested
        ), requested
        assert errors == []
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
        from reports.analysis.results import load_results

        results = load_results(run)
        drawn = 1 + len(results["plots"]["cost"]) + sum(
            len(e["plots"]) for e in results["experiments"])
        assert len(images) == drawn >= 8
        assert all(complete and width > 0 for complete, width, _ in images), images
        assert page.evaluate("document.scripts.length") == 0
        assert page.title() != "owned"
        body = page.inner_text("body")
        assert 'sqlite <script>document.title="owned"</script>' in body
        assert "UNKNOWN" in body.upper() and "Is a global safe here?" in body
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        page.close()


def test_report_prints(browser: Any, tmp_path: Path) -> None:
    """The print stylesheet applies and the report prints to PDF with one page per experiment."""
    run = make_matrix(tmp_path / "run")
    html = render_run(run, formats=("html",))["html"]
    page, _, errors = open_report(browser, html)
    try:
        page.emulate_media(media="print")
        breaks = page.eval_on_selector_all(
            "section.experiment", "els => els.map(e => getComputedStyle(e).breakBefore)")
        assert breaks and set(breaks) == {"page"}
        pdf = tmp_path / "report.pdf"
        page.pdf(path=str(pdf), format="A4")
        assert pdf.read_bytes()[:5] == b"%PDF-"
        assert errors == []
    finally:
        page.close()


def classroom_like_run(run: Path) -> Path:
    """A 3 x 5 matrix with every kind of cell, for the first screen."""
    make_matrix(run)
    cells = run / "cells"
    make_experiment(cells / "threaded-global-yield", window="yield", kind="race")
    make_experiment(cells / "threaded-g", store="g", kind="all-ones")
    make_experiment(cells / "sync-g", store="g", mode="gunicorn-sync", kind="all-ones",
                    pids=(4101, 4102))
    make_experiment(cells / "gevent-global", mode="gevent", kind="safe")
    make_experiment(cells / "gevent-global-yield", mode="gevent", window="yield", kind="race")
    make_experiment(cells / "sync-sqlite", mode="gunicorn-sync", store="sqlite", kind="safe",
                    pids=(4101, 4102))
    return run


def test_first_screen_shows_answer_claims_and_heatmap(browser: Any, tmp_path: Path) -> None:
    """At 1280x720 the answer, all nine claims and the heatmap lie within the first 720 px,
    in type large enough to read from the back of a room; a screenshot is kept."""
    run = classroom_like_run(tmp_path / "run")
    html = render_run(run, formats=("html",))["html"]
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        page.goto(html.as_uri(), wait_until="load")
        boxes = {selector: page.eval_on_selector(
            selector, "e => { const r = e.getBoundingClientRect();"
                      " return {top: r.top, bottom: r.bottom, height: r.height}; }")
            for selector in ("#answer", "#claims", "#matrix img")}
        for selector, box in boxes.items():
            assert box["top"] >= 0 and box["bottom"] <= 720 and box["height"] > 40, (selector, box)
        assert page.eval_on_selector_all("#claims li", "els => els.length") == 9
        sizes = page.eval_on_selector_all(
            "#answer, #claims .claim",
            "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
        assert min(sizes) >= 16, sizes
        assert page.eval_on_selector(
            "#answer", "e => parseFloat(getComputedStyle(e).fontSize)") >= 20
        shot = tmp_path / "first-screen.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
