"""The explorer in a real browser: Playwright drives Debian's headless Chromium
(``/usr/bin/chromium``, installed by ``.ci/browser.sh``) against ``prodlens app``
started in a subprocess on a free loopback port.

The store is a SYNTHETIC fixture (``prodlens.app.fixtures``): real photos and real
SLIC segments from ``tests/data/app``, made-up explanation weights.
Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium with `bash .ci/browser.sh`", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed: pip install playwright")

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "data" / "app"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: no Gradio spinner, progress text or pending overlay anywhere on the page
IDLE = "() => document.querySelectorAll('.pending, .eta-bar, .progress-text').length === 0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store_file(tmp_path_factory) -> Path:
    from prodlens.app.fixtures import build_fixture_store

    folder = tmp_path_factory.mktemp("appstore")
    build_fixture_store(folder / "results.sqlite", PHOTOS).close()
    return folder / "results.sqlite"


@pytest.fixture(scope="module")
def app_url(store_file):
    folder = store_file.parent
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = open(folder / "app.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prodlens.app", "--db", str(folder / "results.sqlite"), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prodlens app exited with {proc.returncode}: {(folder / 'app.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prodlens app did not answer on {url} within 120 s: {(folder / 'app.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (Playwright's sync API allows one instance at a time)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(app_url, browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(30_000)
    pg.external = []  # requests that left the machine (there must be none)
    pg.errors = []

    def route(r):
        u = r.request.url
        if u.startswith(("http://127.0.0.1", "data:", "blob:")):
            return r.continue_()
        pg.external.append(u)
        return r.abort()

    pg.route("**/*", route)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(app_url)
    yield pg
    pg.close()


def _settle(page) -> None:
    page.wait_for_timeout(250)
    page.wait_for_function(IDLE)


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_timeout(300)


def _choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator("ul[role='listbox'] li", has_text=option).first.click()
    _settle(page)


def _loaded(page, selector: str) -> int:
    """Number of fully decoded images under ``selector``."""
    page.wait_for_function(
        "(sel) => [...document.querySelectorAll(sel)].some(i => i.complete && i.naturalWidth > 0)", arg=selector
    )
    return page.evaluate("(sel) => [...document.querySelectorAll(sel)].filter(i => i.complete && i.naturalWidth > 0).length",
                         selector)


def _true_class_quality(store_file: Path, run: str, class_name: str) -> dict:
    from prodlens.store import Store

    with Store.open(store_file, create=False) as store:
        return {e.sample_id: e.quality for e in store.get_explanations(run, class_name=class_name, label=class_name)}


def test_explorer_views_render_in_chromium(page, store_file):
    # -- single sample: the app opens on the run and class with the most explanations
    from prodlens.app.views import Explorer
    from prodlens.store import Store

    with Store.open(store_file, create=False) as store:
        ex = Explorer(store)
        first_run = ex.richest_run()
        first_class = ex.richest_class(first_run)
    page.wait_for_selector("#pl-expl-1 img")
    _settle(page)
    assert page.locator("#pl-run input").input_value() == first_run
    assert page.locator("#pl-class input").input_value() == first_class
    assert _loaded(page, "#pl-photo img") == 1 and _loaded(page, "#pl-expl-1 img") == 1
    assert "classified" in page.locator("#pl-status").inner_text()
    assert page.locator("#pl-ocr textarea").input_value().strip()
    _shot(page, "01_single")

    # -- a misclassified sample: true and predicted class side by side
    _choose(page, "pl-run", "baseline")
    _choose(page, "pl-class", "Arla-Standard-Milk")
    page.wait_for_function("() => document.querySelector('#pl-status').innerText.includes('misclassified')")
    assert _loaded(page, "#pl-expl-1 img") == 1 and _loaded(page, "#pl-expl-2 img") == 1
    labels = page.locator("#pl-expl-1, #pl-expl-2").all_inner_texts()
    assert "true class" in labels[0] and "predicted class" in labels[1]
    words = page.locator("#pl-words").inner_text()
    assert "ARLA" in words and "weight for Oatly-Oat-Milk" in words
    _shot(page, "02_single_misclassified")

    # -- each explanation's quality: scores, flag and the deletion / insertion curves
    assert "faithfulness" in page.locator("#pl-quality-1").inner_text()
    assert "faithfulness" in page.locator("#pl-quality-2").inner_text()
    assert _loaded(page, "#pl-curves-1 img") == 1 and _loaded(page, "#pl-curves-2 img") == 1

    # -- gallery of the class, then sorted and filtered by quality
    _tab(page, "Gallery")
    assert _loaded(page, "#pl-gallery img") == 2
    assert "scored ones flagged" in page.locator("#pl-gallery-note").inner_text()
    _shot(page, "03_gallery")
    quality = _true_class_quality(store_file, "baseline", "Arla-Standard-Milk")
    _choose(page, "pl-gallery-order", "stability, worst first")
    worst_first = sorted(quality, key=lambda i: quality[i].stability)
    captions = page.locator("#pl-gallery").inner_text()
    assert captions.index(worst_first[0]) < captions.index(worst_first[-1]) and "stability 0." in captions
    for show, keep in (("trusted only", True), ("flagged only", False)):
        page.locator("#pl-gallery-show label", has_text=show).click()
        _settle(page)
        expected = sum(q.trusted == keep for q in quality.values())
        page.wait_for_function("(s) => document.querySelector('#pl-gallery-note').innerText.includes(s)",
                               arg=f"Showing {expected} ({show})")
        if expected:
            assert _loaded(page, "#pl-gallery img") == expected
    page.locator("#pl-gallery-show label", has_text="all").click()
    _settle(page)
    assert _loaded(page, "#pl-gallery img") == 2

    # -- misclassified list; a click on its row opens the sample
    _tab(page, "Misclassified")
    table = page.locator("#pl-mis-table")
    assert "Arla-Standard-Milk_0002" in table.inner_text()
    assert _loaded(page, "#pl-mis-gallery img") == 1
    _shot(page, "04_misclassified")
    table.locator(".cell-wrap", has_text="Arla-Standard-Milk_0002").filter(visible=True).first.click()
    _settle(page)
    assert page.get_by_role("tab", name="Single sample", exact=True).get_attribute("aria-selected") == "true"
    assert "Arla-Standard-Milk_0002" in page.locator("#pl-status").inner_text()

    # -- global: image features, text features, ratio histogram, deletion curves
    _tab(page, "Global")
    assert _loaded(page, "#pl-gcrops-0 img") >= 1
    assert "Image feature 1" in page.locator("#pl-gfeat-0").inner_text()
    assert "supporting explanations" in page.locator("#pl-global-note").inner_text()
    _shot(page, "05_global_image")
    _tab(page, "Text features")
    assert "ARLA" in page.locator("#pl-gtext").inner_text()
    _shot(page, "06_global_text")
    _tab(page, "Image / text ratio")
    page.wait_for_selector("#pl-hist-run canvas, #pl-hist-run svg")
    assert "median" in page.locator("#pl-hist-note").inner_text()
    _shot(page, "07_ratio_histogram")
    _tab(page, "Quality")
    for k in range(4):
        assert _loaded(page, f"#pl-qhist-{k} img") == 1
    assert "explanations of the run are flagged" in page.locator("#pl-quality-note").inner_text()
    table = page.locator("#pl-quality-table").inner_text()
    assert all(flag in table for flag in ("unfaithful", "unstable", "poor_fit", "off_target"))
    _shot(page, "07b_quality")
    _tab(page, "Deletion test")
    page.wait_for_selector("#pl-deletion canvas, #pl-deletion svg")
    _shot(page, "08_deletion")

    # -- two runs side by side
    _tab(page, "Compare runs")
    assert _loaded(page, "#pl-cmp-a img") == 1 and _loaded(page, "#pl-cmp-b img") == 1
    _shot(page, "09_compare")

    # -- matching: the query's best matches, and why the first one matches (run baseline, Arla-Standard-Milk)
    _tab(page, "Matching")
    page.wait_for_function("() => document.querySelector('#pl-why-note').innerText.includes('similarity')")
    assert "top-1" in page.locator("#pl-match-note").inner_text()
    assert "Arla-Standard-Milk_0001" in page.locator("#pl-match-query input").input_value()
    assert _loaded(page, "#pl-match-photo img") == 1
    assert _loaded(page, "#pl-match-gallery img") == 3
    assert "✓" in page.locator("#pl-match-gallery").inner_text()
    assert _loaded(page, "#pl-why-query img") == 1 and _loaded(page, "#pl-why-match img") == 1
    words = page.locator("#pl-why-words").inner_text()
    assert "similarity drop" in words and all(w in words for w in ("arla", "standard", "milk"))
    _shot(page, "10_matching")
    assert "No runner-up" in page.locator("#pl-whynot-note").inner_text()  # one explained match only: says how to add one
    # another match of the query, from the picker: it was not explained, and the page says so
    _choose(page, "pl-match-pick", "Oatly-Oat-Milk_0004")
    page.wait_for_function("() => document.querySelector('#pl-why-note').innerText.includes('not explained')")
    # a query with two explained matches: why the runner-up did not match, side by side with the match
    _choose(page, "pl-class", "Alpro-Fresh-Soy-Milk")
    page.wait_for_function("() => document.querySelector('#pl-whynot-note').innerText.includes('Runner-up')")
    assert _loaded(page, "#pl-whynot-query img") == 1 and _loaded(page, "#pl-whynot-runner img") == 1
    assert "advantage of the match" in page.locator("#pl-whynot-words").inner_text()
    _shot(page, "10b_matching_runner_up")
    _choose(page, "pl-class", "Arla-Standard-Milk")
    # a run without matching results: the store's matching run is shown, and the note says so
    _choose(page, "pl-run", "variant")
    page.wait_for_function("() => document.querySelector('#pl-match-note').innerText.includes('holds no matching results')")
    assert "showing baseline" in page.locator("#pl-match-note").inner_text()
    assert _loaded(page, "#pl-match-photo img") == 1
    _shot(page, "11_matching_other_run")

    assert page.errors == []
    assert page.external == [], f"the page tried to reach the internet: {page.external}"


# ---------------------------------------------------------------- the REAL demo store
# Every tab is walked and any empty frame (a visible picture, gallery, plot or table with
# nothing in it) fails. The store is what ``prodlens demo`` leaves (the pipeline preset
# ``demo``: real OCR, a trained two-stage model, real explanations). ``$PRODLENS_DEMO_OUT``
# names a folder the demo already ran into (``.ci/run`` runs ``make demo`` first); without
# it the fixture runs the demo into ``work/test-demo`` (a few minutes the first time;
# resumed, so seconds after that). Screenshots: ``test-artifacts/browser/demo-*.png``.
#: the look-alike classes the demo explains (every val photo of each)
MILKS = ["Arla-Ecological-Medium-Fat-Milk", "Arla-Medium-Fat-Milk", "Arla-Standard-Milk"]
#: picture outputs that must never show as an empty frame
PICTURES = ["pl-photo", "pl-expl-1", "pl-expl-2", "pl-curves-1", "pl-curves-2", "pl-match-photo", "pl-why-query",
            "pl-why-match", "pl-cmp-a", "pl-cmp-b"] + [f"pl-gcrops-{k}" for k in range(5)] + [f"pl-qhist-{k}" for k in range(4)]
GALLERIES = ["pl-gallery", "pl-mis-gallery", "pl-match-gallery"]
PLOTS = ["pl-hist-run", "pl-hist-class", "pl-deletion"]
TABLES = ["pl-topk", "pl-gtext", "pl-quality-table", "pl-mis-table", "pl-sanity-table", "pl-sanity-samples"]
#: (tab path, what must be on it)
TABS = [
    (("Local", "Single sample"), ["pl-photo", "pl-expl-1", "pl-topk"]),
    (("Local", "Gallery"), ["pl-gallery"]),
    (("Local", "Misclassified"), ["pl-mis-gallery", "pl-mis-table"]),
    (("Global", "Image features"), ["pl-gcrops-0"]),
    (("Global", "Text features"), ["pl-gtext"]),
    (("Global", "Image / text ratio"), ["pl-hist-run", "pl-hist-class"]),
    (("Global", "Quality"), ["pl-qhist-0", "pl-quality-table"]),
    (("Global", "Deletion test"), ["pl-deletion"]),
    (("Matching",), ["pl-match-photo", "pl-match-gallery", "pl-why-query", "pl-why-match"]),
    (("Compare runs",), ["pl-cmp-a"]),
    (("Sanity check",), ["pl-sanity-table", "pl-sanity-samples"]),
]

#: per element id: "empty", "filled" or "hidden" (JS, run in the page)
STATE_JS = """([pictures, galleries, plots, tables]) => {
  const out = {};
  const shown = e => !!e && !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  const loaded = e => [...e.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0).length;
  for (const id of [...pictures, ...galleries]) {
    const e = document.getElementById(id);
    out[id] = !shown(e) ? 'hidden' : (loaded(e) > 0 ? 'filled' : 'empty');
  }
  for (const id of plots) {
    const e = document.getElementById(id);
    out[id] = !shown(e) ? 'hidden' : (e.querySelector('canvas, svg .mark-rect, svg .mark-line, svg path') ? 'filled' : 'empty');
  }
  for (const id of tables) {
    const e = document.getElementById(id);
    const rows = e ? e.querySelectorAll('tbody tr').length : 0;
    out[id] = !shown(e) ? 'hidden' : (rows > 0 ? 'filled' : 'empty');
  }
  return out;
}"""


@pytest.fixture(scope="module")
def demo_store() -> Path:  # noqa: D103
    given = os.environ.get("PRODLENS_DEMO_OUT")
    out = (Path(given) if given else ROOT / "work" / "test-demo").resolve()  # the app runs in another folder
    store = out / "prodlens.sqlite"
    if not given or not store.is_file():
        from prodlens.demo import run_demo

        summary = run_demo(out, progress=False)
        assert summary.ok, summary.text()
    return store


@pytest.fixture(scope="module")
def demo_page(demo_store, browser, tmp_path_factory):
    port = _free_port()
    folder = tmp_path_factory.mktemp("demoapp")
    log = open(folder / "app.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prodlens.app", "--db", str(demo_store), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"prodlens app exited with {proc.returncode}: {(folder / 'app.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"prodlens app did not answer within 120 s: {(folder / 'app.log').read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#pl-expl-1 img")
        _settle(page)
        yield page
        page.close()
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def _states(page) -> dict[str, str]:
    page.wait_for_timeout(700)  # pictures decode after the values arrive
    _settle(page)
    return page.evaluate(STATE_JS, [PICTURES, GALLERIES, PLOTS, TABLES])


def _open(page, path: tuple[str, ...]) -> None:
    for name in path:
        _tab(page, name)
    _settle(page)


@pytest.mark.slow
def test_every_tab_of_the_demo_store_has_real_content(demo_page, demo_store):
    from prodlens.store import Store

    page = demo_page
    assert page.locator("#pl-run input").input_value() == "demo"  # the richest run, not the matching one
    for path, required in TABS:
        _open(page, path)
        states = _states(page)
        name = " > ".join(path)
        page.screenshot(path=str(ARTIFACTS / f"demo-{name.replace(' > ', '-').replace(' / ', '-').replace(' ', '_')}.png"),
                        full_page=True)
        empty = sorted(k for k, v in states.items() if v == "empty")
        assert not empty, f"{name}: empty frames {empty}"
        missing = [k for k in required if states.get(k) != "filled"]
        assert not missing, f"{name}: no content in {missing} ({states})"

    # each look-alike milk: image clusters and word groups of its own
    _open(page, ("Global", "Image features"))
    for milk in MILKS:
        _choose(page, "pl-class", milk)
        _open(page, ("Global", "Image features"))
        assert _states(page)["pl-gcrops-0"] == "filled", f"{milk}: no image cluster"
        _open(page, ("Global", "Text features"))
        assert _states(page)["pl-gtext"] == "filled", f"{milk}: no word group"
    # a misclassified photo explained for its true and its predicted class
    with Store.open(demo_store, create=False) as store:
        wrong = sorted((store.get_sample(p.sample_id).label, p.sample_id) for p in store.get_predictions("demo")
                       if p.predicted != store.get_sample(p.sample_id).label)
    assert wrong, "the demo should explain at least one misclassified photo"
    label, sample_id = wrong[0]
    _choose(page, "pl-class", label)
    _open(page, ("Local", "Misclassified"))
    page.locator("#pl-mis-table .cell-wrap", has_text=sample_id).filter(visible=True).first.click()
    _settle(page)
    assert page.get_by_role("tab", name="Single sample", exact=True).get_attribute("aria-selected") == "true"
    states = _states(page)
    assert states["pl-expl-1"] == states["pl-expl-2"] == "filled", f"{sample_id}: true and predicted class panels"
    assert page.errors == []
