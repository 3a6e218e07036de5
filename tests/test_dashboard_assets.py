"""The dashboard's generated assets (map geometry, escalation levels) are fresh and sound."""

from __future__ import annotations

import json
import re

import pycountry
import pytest

from projections import parameters
from service.cli import dashboard_assets


@pytest.fixture(scope="module")
def generated() -> dict[str, bytes]:
    if not dashboard_assets.TOPOLOGY.exists():
        pytest.fail("world-atlas is missing: scripts/bootstrap dev installs it (npm ci)")
    return dashboard_assets.build()


class TestDashboardAssets:
    def test_the_committed_assets_are_what_the_build_makes(
        self, generated: dict[str, bytes]
    ) -> None:
        """scripts/build-map regenerates byte for byte what is committed in static/."""
        for name, content in generated.items():
            committed = (dashboard_assets.STATIC / name).read_bytes()
            assert committed == content, f"{name} is stale: run scripts/build-map"

    def test_the_map_keys_countries_by_alpha3(self, generated: dict[str, bytes]) -> None:
        """Every drawn country but the two unrecognised ones has a real alpha-3 key, each
        once, with closed SVG paths; no ring streaks across the map (a ring crossing the
        antimeridian is drawn on both sides, clipped by the viewBox)."""
        world = json.loads(generated["world.json"])
        keyed = [country["id"] for country in world["countries"] if country["id"]]
        assert len(keyed) == len(set(keyed)) > 170
        assert {"POL", "RUS", "UKR", "BLR", "USA", "FRA", "GBR", "XKX"} <= set(keyed)
        assert "ATA" not in keyed
        for code in keyed:
            assert code == "XKX" or pycountry.countries.get(alpha_3=code) is not None, code
        for country in world["countries"]:
            assert country["d"].startswith("M") and country["d"].endswith("Z")
            for ring in country["d"][1:-1].split("ZM"):
                xs = [float(pair.split(",")[0]) for pair in ring.split("L")]
                ys = [float(pair.split(",")[1]) for pair in ring.split("L")]
                assert max(xs) - min(xs) < world["width"] / 2, country["name"]
                assert max(xs) > 0 and min(xs) < world["width"], country["name"]
                assert min(ys) >= 0 and max(ys) <= world["height"] + 1, country["name"]

    def test_the_levels_follow_the_model(self, generated: dict[str, bytes]) -> None:
        """The legend's levels are the model's names and thresholds, not a copy of them."""
        levels = json.loads(generated["levels.json"])
        assert levels["parameters_version"] == parameters.VERSION
        for entry in levels["levels"]:
            assert entry["name"] == parameters.LEVEL_NAMES[entry["level"]]
            assert parameters.level_of(entry["min_score"]) == entry["level"]


class TestDashboardStaticFiles:
    """What the CSP (default-src 'self') and the offline rule demand of static/."""

    def test_nothing_is_fetched_from_elsewhere_and_nothing_is_inline(self) -> None:
        """No URL but the SVG namespace in the code (no CDN, no web font), no inline
        script or style, no style attribute, and no innerHTML for data to become markup."""
        sources = {
            path.name: path.read_text()
            for path in dashboard_assets.STATIC.iterdir()
            if path.suffix in (".html", ".js", ".css")
        }
        assert {"index.html", "app.js", "api.js", "charts.js", "dom.js", "app.css"} <= set(sources)
        for name, text in sources.items():
            urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
            assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
            assert "innerHTML" not in text and "outerHTML" not in text, name
            assert "style=" not in text and "<style" not in text, name
            assert "eval(" not in text and "new Function" not in text, name
        assert re.findall(r"<script[^>]*>", sources["index.html"]) == [
            '<script type="module" src="app.js">'
        ]
