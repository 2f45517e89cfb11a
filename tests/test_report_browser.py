"""The HTML report in a real headless Chromium: self-contained, error-free, every image shown."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from test_reports import make_experiment, make_matrix

from reports.analysis.results import load_results, write_results
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
        # The heatmap is drawn in the page itself; every other plot is an image.
        drawn = len(results["plots"]["cost"]) + sum(
            len(e["plots"]) for e in results["experiments"])
        assert len(images) == drawn >= 7
        assert all(complete and width > 0 for complete, width, _ in images), images
        assert page.eval_on_selector_all("#matrix td a", "els => els.length") == len(
            results["experiments"])
        assert page.evaluate("document.scripts.length") == 0  # no stepper: no script
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
            for selector in ("#answer", "#claims", "#matrix")}
        for selector, box in boxes.items():
            assert box["top"] >= 0 and box["bottom"] <= 720 and box["height"] > 40, (selector, box)
        right = page.eval_on_selector("#matrix table", "e => e.getBoundingClientRect().right")
        assert right <= 1280 and page.evaluate("document.documentElement.scrollWidth") <= 1280
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


# -- You are the scheduler ---------------------------------------------------------------


def stepper_run(run: Path) -> Path:
    """A matrix whose threaded global (window yield) raced within one process, served (as
    far as its records say) by this interpreter: the report holds one stepper."""
    make_matrix(run)
    make_experiment(run / "cells" / "threaded-global-yield", window="yield", kind="race",
                    executable=sys.executable)
    return run


class Scheduler:
    """What the stepper should show, step by step: each instruction's effect on a thread's
    value and on self.param, as the report's sentences describe them."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.effects = [ins["effect"] for ins in model["program"]]
        self.shared = model["start"]
        self.pc = [0, 0]
        self.local: list[int | None] = [None, None]
        self.read: list[int | None] = [None, None]
        self.got: list[int | None] = [None, None]
        self.returned: list[int | None] = [None, None]
        self.lost = False

    def step(self, i: int) -> None:
        effect = self.effects[self.pc[i]]
        self.pc[i] += 1
        if effect == "read":
            self.local[i] = self.read[i] = self.shared
        elif effect == "add":
            self.local[i] = (self.local[i] or 0) + 1
        elif effect == "write":
            self.lost = self.lost or self.shared != self.read[i]
            self.shared = self.local[i] or 0
        elif effect == "reread":
            self.got[i] = self.shared
        elif effect == "return":
            self.returned[i] = self.got[i] if self.got[i] is not None else self.local[i]

    def shown(self) -> tuple[str, str, str, str, str]:
        def text(value: int | None) -> str:
            return "-" if value is None else str(value)
        return (str(self.shared), text(self.local[0]), text(self.local[1]),
                text(self.returned[0]), text(self.returned[1]))


def shown(stepper: Any) -> tuple[str, str, str, str, str]:
    """self.param, both threads' values and what each returned, as the page shows them."""
    return (stepper.locator("[data-shared]").inner_text(),
            stepper.locator('[data-thread="0"] [data-local]').inner_text(),
            stepper.locator('[data-thread="1"] [data-local]').inner_text(),
            stepper.locator('[data-thread="0"] [data-returned]').inner_text(),
            stepper.locator('[data-thread="1"] [data-returned]').inner_text())


def test_the_student_schedules_the_race_to_its_lost_update(browser: Any, tmp_path: Path) -> None:
    """You are the scheduler: on a 1280x720 screen, clicking the first request through its
    read and the second through to its end, then the first again, shows self.param and both
    values at every step and reaches the lost update, which says so and links to the
    measured witness; R replays the witness's schedule to the same end, 0 starts over, and
    the keys 1 and 2 run a safe order (no update lost). One script runs, the one the page's
    CSP names by its hash; nothing is fetched."""
    run = stepper_run(tmp_path / "run")
    html = render_run(run, formats=("html",))["html"]
    results = load_results(run)
    [entry] = [e for e in results["experiments"]
               if (e.get("interleaving") or {}).get("stepper")]
    model = entry["interleaving"]["stepper"]
    value = entry["interleaving"]["value"]
    page, requested, errors = open_report(browser, html)
    try:
        page.set_viewport_size({"width": 1280, "height": 720})
        assert page.evaluate("document.scripts.length") == 1
        csp = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
        assert csp is not None and "script-src 'sha256-" in csp and "default-src 'none'" in csp
        assert "unsafe" not in csp.split("script-src")[1]
        stepper = page.locator(".stepper")
        assert stepper.count() == 1
        stepper.scroll_into_view_if_needed()
        box = stepper.bounding_box()
        assert box is not None and box["height"] <= 720 and box["width"] <= 1280
        assert stepper.locator('[data-thread="0"] h4').inner_text().endswith(model["threads"][0])
        expected = Scheduler(model)
        assert shown(stepper) == expected.shown() == (str(value - 1), "-", "-", "-", "-")
        read = model["program"].index(next(i for i in model["program"] if i["effect"] == "read"))
        order = [0] * (read + 1) + [1] * len(model["program"]) + [0] * (
            len(model["program"]) - read - 1)
        lost_at = None
        for number, thread in enumerate(order):
            stepper.locator(f'[data-step="{thread}"]').click()
            expected.step(thread)
            assert shown(stepper) == expected.shown(), number
            next_row = stepper.locator(f'[data-thread="{thread}"] li.st-next')
            if expected.pc[thread] < len(model["program"]):
                assert next_row.get_attribute("data-pc") == str(expected.pc[thread])
            if expected.lost and lost_at is None:
                lost_at = number
                assert stepper.locator("[data-lost]").is_visible()
                assert "Lost update" in stepper.locator("[data-lost]").inner_text()
        assert lost_at is not None and lost_at < len(order) - 1  # the write, not the end
        assert shown(stepper) == (str(value), str(value), str(value), str(value), str(value))
        assert stepper.get_attribute("data-state") == "lost"
        assert f"Both requests got {value}" in stepper.locator("[data-message]").inner_text()
        assert stepper.locator('[data-step="0"]').is_disabled()
        link = stepper.locator("[data-lost] a")
        target = link.get_attribute("href")
        assert target is not None and page.locator(target).count() == 1
        assert page.locator(target).inner_text() == "Witnesses"
        link.click()
        assert page.evaluate("location.hash") == target
        # Reset by key, then replay the witness's schedule by key.
        stepper.focus()
        page.keyboard.press("0")
        assert shown(stepper) == (str(value - 1), "-", "-", "-", "-")
        assert not stepper.locator("[data-lost]").is_visible()
        page.keyboard.press("r")
        assert stepper.get_attribute("data-state") == "replaying"
        page.wait_for_function(
            "() => document.querySelector('.stepper').dataset.state !== 'replaying'",
            timeout=60_000)
        replayed = Scheduler(model)
        for thread in model["replay"]:
            replayed.step(thread)
        assert shown(stepper) == replayed.shown() == (str(value),) * 5
        assert stepper.get_attribute("data-state") == "lost"
        # The reset button, then a safe order by the keys alone: one request, then the other.
        stepper.locator("[data-reset]").click()
        assert shown(stepper) == (str(value - 1), "-", "-", "-", "-")
        stepper.focus()
        safe = Scheduler(model)
        for thread in [0] * len(model["program"]) + [1] * len(model["program"]):
            page.keyboard.press(str(thread + 1))
            safe.step(thread)
            assert shown(stepper) == safe.shown()
        assert shown(stepper) == (str(value + 1), str(value), str(value + 1), str(value),
                                  str(value + 1))
        assert stepper.get_attribute("data-state") == "done"
        assert "no update was lost" in stepper.locator("[data-message]").inner_text()
        assert not stepper.locator("[data-lost]").is_visible()
        assert errors == []
        assert all(url == html.as_uri() or url.startswith("data:") for url in requested), \
            requested
        page.screenshot(path=str(tmp_path / "stepper.png"))
    finally:
        page.close()


def test_the_stepper_prints_run_derived_text_as_text(browser: Any, tmp_path: Path) -> None:
    """Thread names and sentences from results.json reach the page as text: markup in them
    is shown, never run, and fetches nothing."""
    run = stepper_run(tmp_path / "run")
    render_run(run, formats=("json",))
    results = load_results(run)
    evil = '<img src="x" onerror="document.title=\'owned\'">'
    for entry in results["experiments"]:
        model = (entry.get("interleaving") or {}).get("stepper")
        if model:
            model["threads"][0] = f"request {evil}"
            model["words"]["read"] = "{who} reads " + evil + " {value}"
    write_results(results, run)
    html = render_run(run, formats=("html",))["html"]
    page, requested, errors = open_report(browser, html)
    try:
        stepper = page.locator(".stepper")
        assert evil in stepper.locator('[data-thread="0"] h4').inner_text()
        stepper.locator('[data-step="0"]').click()
        stepper.locator('[data-step="0"]').click()
        stepper.locator('[data-step="0"]').click()
        log = stepper.locator("[data-log]").inner_text()
        assert f"request {evil} reads {evil}" in log
        assert page.locator(".stepper img").count() == 0
        assert page.title() != "owned" and errors == []
        assert page.evaluate("document.scripts.length") == 1
        assert all(url == html.as_uri() or url.startswith("data:") for url in requested), \
            requested
    finally:
        page.close()


def two_scenario_run(run: Path) -> Path:
    """Seven modes of the counter and a second scenario: the classroom's widest heatmap."""
    modes = ("single", "threaded", "processes", "gunicorn-sync", "gunicorn-gthread", "gevent",
             "cluster")
    for mode in modes:
        kind = "safe" if mode in ("single", "threaded") else "per-process"
        make_experiment(run / "cells" / f"{mode}-global", mode=mode, kind=kind,
                        pids=(4101,) if kind == "safe" else (4101, 4102))
        make_experiment(run / "cells" / f"{mode}-sqlite", mode=mode, store="sqlite",
                        kind="safe")
    make_experiment(run / "cells" / "threaded-global-yield", window="yield", kind="race")
    for store in ("global", "sqlite"):
        make_experiment(run / "cells" / f"ids-{store}", mode="gunicorn-sync", store=store,
                        kind="safe", scenario="ids")
    return run


def test_the_heatmap_reads_on_a_projector(browser: Any, tmp_path: Path) -> None:
    """At 1280x720 every word of the heatmap (cells and both axes) is at least as large as
    the report's body text, none is cut or spills out of its cell, the widest grid (seven
    modes) fits the screen's width, and each scenario has its own; a screenshot is kept."""
    run = two_scenario_run(tmp_path / "run")
    html = render_run(run, formats=("html",))["html"]
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        page.goto(html.as_uri(), wait_until="load")
        body = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        assert body >= 16
        sizes = page.eval_on_selector_all(
            "#matrix th, #matrix td span, #matrix td.hm-none, #matrix .facet-title",
            "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
        assert sizes and min(sizes) >= body, (min(sizes), body)
        spilled = page.eval_on_selector_all(
            "#matrix td span, #matrix th",
            "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)")
        assert spilled == []
        widths = page.eval_on_selector_all(
            "#matrix table", "els => els.map(e => e.getBoundingClientRect().right)")
        assert len(widths) == 2 and max(widths) <= 1280
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        captions = page.eval_on_selector_all("#matrix .facet-title",
                                             "els => els.map(e => e.textContent)")
        assert [c.split(":")[0] for c in captions] == ["counter", "ids"]
        page.locator("#matrix").scroll_into_view_if_needed()
        shot = tmp_path / "heatmap.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
