"""The Self-Assessment Manikin of the rating form (static/sam.js), drawn in headless chromium.

Five figures per scale with the 9 points on and between them; each scale's figures change the
way the SAM's do; every point has a spoken label in English and Hindi. (Answering the form by
mouse, touch and keyboard is exercised in a whole session by test_session_app.py.)
"""

from __future__ import annotations

import asyncio
import re

import pytest

from wears.session.server import STATIC

from . import RUN_TIMEOUT_S
from .session_driver import browser

pytestmark = pytest.mark.slow

SCALES = ("valence", "arousal", "dominance")

# Per scale and number of points: each button's kind, label and what its figure shows.
_MEASURE = """([lang, points]) => {
  const t = (key) => TEXTS[lang][key] || key;
  const screen = document.getElementById("screen");
  const out = {};
  for (const scale of ["valence", "arousal", "dominance"]) {
    screen.innerHTML = `<div class="scale sam"><div class="points">${samButtons(scale, points, t)}</div></div>`;
    out[scale] = [...screen.querySelectorAll("button")].map((b) => {
      const mouth = b.querySelector("path.line");
      const burst = b.querySelector(".burst");
      const eye = b.querySelector("ellipse.eye-open");
      const figure = b.querySelector("svg.sam-figure g");
      return {value: Number(b.dataset.value), kind: b.className, role: b.getAttribute("role"),
              label: b.getAttribute("aria-label"), mouth: mouth && mouth.getAttribute("d"),
              burst: burst ? burst.getBBox().width : null, eye: eye ? Number(eye.getAttribute("ry")) : 0,
              height: figure ? figure.getBoundingClientRect().height : null};
    });
  }
  return out;
}"""


@pytest.fixture(scope="module")
def drawn():
    async def run():
        async with browser() as b:
            page = await b.new_page()
            await page.set_content('<html><body class="participant"><main id="screen"></main></body></html>')
            await page.add_style_tag(path=str(STATIC / "session.css"))
            for script in ("i18n.js", "sam.js"):
                await page.add_script_tag(path=str(STATIC / script))
            return {(lang, points): await page.evaluate(_MEASURE, [lang, points])
                    for lang in ("en", "hi") for points in (9, 7)}

    return asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))


def _figures(buttons):
    return [b for b in buttons if b["kind"] == "figure"]


def _increasing(values):
    return all(a < b for a, b in zip(values, values[1:]))


def test_nine_points_lie_on_five_figures_and_between_them(drawn):
    for scale in SCALES:
        buttons = drawn["en", 9][scale]
        assert [b["value"] for b in buttons] == list(range(1, 10))
        assert [b["value"] for b in _figures(buttons)] == [1, 3, 5, 7, 9]
        assert all(b["role"] == "radio" for b in buttons)


def test_other_point_counts_get_a_figure_at_every_point(drawn):
    assert all(len(_figures(drawn["en", 7][scale])) == 7 for scale in SCALES)


def test_valence_figures_go_from_frowning_to_smiling(drawn):
    # The mouth is a quadratic curve "M x corner Q 50 bend x corner": bend below the corners smiles.
    curves = []
    for b in _figures(drawn["en", 9]["valence"]):
        _, corner, _, bend, _, _ = map(float, re.findall(r"-?[\d.]+", b["mouth"]))
        curves.append(bend - corner)
    assert curves[0] < 0 < curves[-1] and _increasing(curves)


def test_arousal_figures_open_their_eyes_and_their_explosion_grows(drawn):
    figures = _figures(drawn["en", 9]["arousal"])
    assert figures[0]["eye"] == 0 and _increasing([f["eye"] for f in figures[1:]])  # closed, then opening
    assert _increasing([f["burst"] for f in figures])


def test_dominance_figures_grow_from_small_to_large(drawn):
    heights = [f["height"] for f in _figures(drawn["en", 9]["dominance"])]
    assert _increasing(heights) and heights[-1] > 2 * heights[0]


def test_every_point_is_labelled_in_english_and_hindi(drawn):
    for lang, scale_name, word in [("en", "Pleasure", "between"), ("hi", "प्रसन्नता", "के बीच")]:
        buttons = drawn[lang, 9]["valence"]
        labels = [b["label"] for b in buttons]
        assert len(set(labels)) == 9 and all(scale_name in label for label in labels)
        assert all(word in b["label"] for b in buttons if b["kind"] == "between")
        for scale in SCALES:
            for b in drawn[lang, 9][scale]:
                assert str(b["value"]) in b["label"] and not re.search(r"[{}]|_words|undefined", b["label"])
    assert drawn["en", 9]["arousal"][-1]["label"] == "Arousal 9 of 9: very excited"
    assert drawn["hi", 9]["valence"][0]["label"] == "प्रसन्नता: 9 में से 1, बहुत दुखी"
