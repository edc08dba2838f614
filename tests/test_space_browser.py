"""The Space in a real headless browser: Debian's chromium driven by Playwright (no browser download).

CI installs the browser with ``apt-get install -y chromium``; without /usr/bin/chromium these tests skip.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from space_helpers import launched_space

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUERY = "which book is about the history of music"
DOCS = [
    "a history of music in the old city",
    "the red car is fast",
    "water and fire",
    "a book about language and music",
]
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="/usr/bin/chromium is missing: apt-get install -y chromium"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def models(tiny_teacher_dir, tiny_leaf_dir):
    from sentence_transformers import SentenceTransformer

    return (
        SentenceTransformer(str(tiny_teacher_dir), device="cpu"),
        SentenceTransformer(str(tiny_leaf_dir), device="cpu"),
    )


@pytest.fixture(scope="module")
def app_url(tiny_teacher_dir, tiny_leaf_dir):
    with launched_space(tiny_leaf_dir, tiny_teacher_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1500})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url, wait_until="domcontentloaded")
    page.locator("#query textarea").wait_for()
    yield page
    context.close()


def read_table(page, elem_id: str, n_rows: int, n_cols: int) -> list[list[str]]:
    """The cells of a gradio Dataframe as text, once it shows ``n_rows`` rows."""
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length >= n",
        arg=[f"#{elem_id} [role=gridcell]", n_rows * n_cols],
    )
    return [
        [
            page.locator(f'#{elem_id} [role=gridcell][data-row="{r}"][data-col="{c}"]').inner_text().strip()
            for c in range(n_cols)
        ]
        for r in range(n_rows)
    ]


def expected_columns(teacher, leaf, query, docs, dim=None, precision="none"):
    from leaf_hub.space.compare import transform

    q_t, d_t = teacher.encode_query([query]), teacher.encode_document(docs)
    q_l, d_l = leaf.encode_query([query]), leaf.encode_document(docs)
    if precision != "none" or dim:
        dim = dim or q_t.shape[1]
        q_t, d_t, q_l, d_l = (transform(x, dim, precision) for x in (q_t, d_t, q_l, d_l))
    return {
        "teacher": teacher.similarity(q_t, d_t)[0].tolist(),
        "leaf": leaf.similarity(q_l, d_l)[0].tolist(),
        "asymmetric": teacher.similarity(q_l, d_t)[0].tolist(),
    }


def test_type_compare_and_read_the_scores(page, models, tmp_path):
    teacher, leaf = models
    page.locator("#query textarea").fill(QUERY)
    page.locator("#documents textarea").fill("\n".join(DOCS))
    page.locator("#compare-button").click()
    page.get_by_text("Rank agreement with the teacher").wait_for()
    rows = read_table(page, "score-table", len(DOCS), 8)
    page.screenshot(path=str(tmp_path / "space-compare.png"), full_page=True)

    expected = expected_columns(teacher, leaf, QUERY, DOCS)
    assert [row[1] for row in rows] == DOCS
    for name, column in (("teacher", 2), ("leaf", 4), ("asymmetric", 6)):
        shown = [float(row[column]) for row in rows]
        for s, e in zip(shown, expected[name], strict=True):
            # The page shows the score rounded to 4 decimals: equal within half a unit of the last place.
            assert abs(s - e) <= 0.5e-4 + 1e-7, (name, s, e)
        ranks = [int(row[column + 1]) for row in rows]
        assert sorted(ranks) == list(range(1, len(DOCS) + 1))
        assert ranks.index(1) == max(range(len(DOCS)), key=lambda i: expected[name][i])
    agreement = page.locator("#agreement").inner_text()
    assert "Kendall" in agreement and re.search(r"teacher \d+ ms, leaf \d+ ms", agreement)
    assert (tmp_path / "space-compare.png").stat().st_size > 10_000


def test_binary_toggle_rescores_the_table(page, models, tmp_path):
    teacher, leaf = models
    page.locator("#query textarea").fill(QUERY)
    page.locator("#documents textarea").fill("\n".join(DOCS))
    page.locator("#compare-button").click()
    page.get_by_text("precision none").wait_for()
    page.locator("#precision").get_by_text("binary").click()
    page.get_by_text("precision binary").wait_for()
    rows = read_table(page, "score-table", len(DOCS), 8)
    expected = expected_columns(teacher, leaf, QUERY, DOCS, precision="binary")
    for name, column in (("teacher", 2), ("leaf", 4), ("asymmetric", 6)):
        for row, e in zip(rows, expected[name], strict=True):
            assert abs(float(row[column]) - e) <= 0.5e-4 + 1e-7, (name, row, e)
    page.screenshot(path=str(tmp_path / "space-binary.png"), full_page=True)


def test_dimension_slider_rescores_the_table(page, models):
    teacher, leaf = models
    page.locator("#query textarea").fill(QUERY)
    page.locator("#documents textarea").fill("\n".join(DOCS))
    page.locator("#compare-button").click()
    page.get_by_text("(48 dimensions, precision none)").wait_for()
    number = page.locator("#dimensions input[type=number]")
    number.fill("16")
    number.press("Enter")
    page.get_by_text("(16 dimensions, precision none)").wait_for()
    rows = read_table(page, "score-table", len(DOCS), 8)
    expected = expected_columns(teacher, leaf, QUERY, DOCS, dim=16)
    for name, column in (("teacher", 2), ("leaf", 4), ("asymmetric", 6)):
        for row, e in zip(rows, expected[name], strict=True):
            assert abs(float(row[column]) - e) <= 0.5e-4 + 1e-7, (name, row, e)


def test_example_fills_the_inputs(page):
    from leaf_hub.space.compare import EXAMPLES

    page.get_by_text(EXAMPLES[1][0], exact=True).first.click()
    page.wait_for_function("q => document.querySelector('#query textarea').value === q", arg=EXAMPLES[1][0])
    assert page.locator("#documents textarea").input_value() == EXAMPLES[1][1]


def test_too_many_documents_show_a_clear_error(page, tmp_path):
    from leaf_hub.space.compare import MAX_DOCUMENTS

    page.locator("#query textarea").fill("q")
    page.locator("#documents textarea").fill("\n".join(f"doc {i}" for i in range(MAX_DOCUMENTS + 3)))
    page.locator("#compare-button").click()
    toast = page.get_by_test_id("toast-text")
    toast.first.wait_for()
    assert toast.first.inner_text() == (
        f"{MAX_DOCUMENTS + 3} documents given; at most {MAX_DOCUMENTS} are compared, remove some lines"
    )
    # The toast is fixed to the viewport and flies in: a viewport screenshot once it has landed.
    page.wait_for_timeout(800)
    page.screenshot(path=str(tmp_path / "space-error.png"))


def test_sentence_pair_tab(page, models, tmp_path):
    teacher, leaf = models
    s1, s2 = "the cat is in the house", "a dog is in the city"
    page.get_by_role("tab", name="Sentence pair").click()
    page.locator("#sentence1 textarea, #sentence1 input").first.fill(s1)
    page.locator("#sentence2 textarea, #sentence2 input").first.fill(s2)
    page.locator("#pair-button").click()
    rows = read_table(page, "pair-table", 3, 2)
    got = {name: float(value) for name, value in rows}
    t, lf = teacher.encode([s1, s2]), leaf.encode([s1, s2])
    assert abs(got["teacher"] - float(teacher.similarity(t[:1], t[1:])[0, 0])) <= 0.5e-4 + 1e-7
    assert abs(got["leaf"] - float(leaf.similarity(lf[:1], lf[1:])[0, 0])) <= 0.5e-4 + 1e-7
    page.get_by_role("tab", name="Card facts").click()
    page.locator("#facts").get_by_text("parameters").wait_for()
    page.screenshot(path=str(tmp_path / "space-facts.png"), full_page=True)
