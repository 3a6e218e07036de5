"""The dashboard's generated static assets: the world map and the escalation levels.

``scripts/build-map`` runs this once and the outputs are committed under
``service/api/http/static/``; a test regenerates them and compares bytes, as for the proto
code. The browser then needs nothing from the internet and no map library: the map is SVG
path strings, already projected.

- ``world.json``: every country of world-atlas's countries-110m TopoJSON (Natural Earth,
  ISO 3166 numeric ids) as an SVG path in the Natural Earth projection, keyed by ISO 3166
  alpha-3 (pycountry), with its name. Antarctica is left out: it takes a fifth of the
  height and no development is ever located there.
- ``levels.json``: the escalation levels (names, score thresholds, parameters version) from
  ``projections.parameters``, so the legend and the history chart's threshold lines follow
  the model rather than a copy of it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pycountry

from projections import parameters

ROOT = Path(__file__).resolve().parent.parent.parent
TOPOLOGY = ROOT / "node_modules" / "world-atlas" / "countries-110m.json"
STATIC = ROOT / "service" / "api" / "http" / "static"

#: The SVG viewBox width; the height follows from the projection's aspect.
WIDTH = 960.0
#: Southernmost latitude drawn (Antarctica is left out, see above).
SOUTH = -58.0
NORTH = 85.0
#: Countries world-atlas gives no ISO numeric id (or one pycountry lacks): their alpha-3
#: as the ledger writes them (Kosovo's user-assigned XKX, as the EU and IMF use).
BY_NAME = {"Kosovo": "XKX", "N. Cyprus": "", "Somaliland": ""}
LEFT_OUT = {"Antarctica"}

Point = tuple[float, float]
Ring = list[Point]


def natural_earth(longitude: float, latitude: float) -> Point:
    """The Natural Earth projection (Šavrič et al. 2011), unscaled x, y (y up)."""
    phi = math.radians(latitude)
    lam = math.radians(longitude)
    phi2 = phi * phi
    phi4 = phi2 * phi2
    x = lam * (
        0.8707 - 0.131979 * phi2 + phi4 * (-0.013791 + phi4 * (0.003971 * phi2 - 0.001529 * phi4))
    )
    y = phi * (
        1.007226 + phi2 * (0.015085 + phi4 * (-0.044475 + 0.028874 * phi2 - 0.005916 * phi4))
    )
    return x, y


def decode_arcs(topology: dict[str, Any]) -> list[Ring]:
    """TopoJSON's quantized, delta-encoded arcs as absolute longitude/latitude points."""
    transform = topology["transform"]
    (kx, ky), (dx, dy) = transform["scale"], transform["translate"]
    arcs: list[Ring] = []
    for arc in topology["arcs"]:
        x = y = 0
        points: Ring = []
        for qx, qy in arc:
            x += qx
            y += qy
            points.append((x * kx + dx, y * ky + dy))
        arcs.append(points)
    return arcs


def ring_points(indices: Sequence[int], arcs: list[Ring]) -> Ring:
    """A ring from its arcs; a negative index ~i means arc i reversed, and each arc after
    the first repeats the previous one's last point, so that is dropped."""
    ring: Ring = []
    for index in indices:
        arc = arcs[index] if index >= 0 else arcs[~index][::-1]
        ring.extend(arc if not ring else arc[1:])
    return ring


def clipped(ring: Ring, limit: float, below: bool) -> Ring:
    """The part of ``ring`` on one side of the meridian ``limit`` (Sutherland-Hodgman with
    one edge): the map's edge is curved, so what lies past ±180° must be cut, not hidden."""

    def inside(point: Point) -> bool:
        return point[0] <= limit if below else point[0] >= limit

    def crossing(a: Point, b: Point) -> Point:
        t = (limit - a[0]) / (b[0] - a[0])
        return (limit, a[1] + t * (b[1] - a[1]))

    out: Ring = []
    for index, current in enumerate(ring):
        previous = ring[index - 1]
        if inside(current):
            if not inside(previous):
                out.append(crossing(previous, current))
            out.append(current)
        elif inside(previous):
            out.append(crossing(previous, current))
    return out


def unwrapped(ring: Ring) -> list[Ring]:
    """A ring that crosses the antimeridian (Russia's Chukotka, Fiji) jumps by ~360° of
    longitude; drawn as is, it would streak across the whole map. Its longitudes are made
    continuous (some then lie beyond ±180°), then it is cut at the antimeridian and the part
    beyond is drawn on the other side."""
    points: Ring = []
    shift = 0.0
    for index, (longitude, latitude) in enumerate(ring):
        if index:
            jump = longitude + shift - points[-1][0]
            if jump > 180:
                shift -= 360
            elif jump < -180:
                shift += 360
        points.append((longitude + shift, latitude))
    if all(-180 <= longitude <= 180 for longitude, _ in points):
        return [points]
    if max(longitude for longitude, _ in points) > 180:
        near, far = clipped(points, 180.0, below=True), clipped(points, 180.0, below=False)
        far = [(longitude - 360, latitude) for longitude, latitude in far]
    else:
        near, far = clipped(points, -180.0, below=False), clipped(points, -180.0, below=True)
        far = [(longitude + 360, latitude) for longitude, latitude in far]
    return [part for part in (near, far) if len(part) >= 3]


def polygons_of(geometry: dict[str, Any]) -> list[list[Sequence[int]]]:
    if geometry["type"] == "Polygon":
        return [geometry["arcs"]]
    if geometry["type"] == "MultiPolygon":
        return list(geometry["arcs"])
    return []


def alpha3_of(numeric: str | None, name: str) -> str:
    if name in BY_NAME:
        return BY_NAME[name]
    country = pycountry.countries.get(numeric=numeric) if numeric else None
    return str(country.alpha_3) if country is not None else ""


def world(topology: dict[str, Any]) -> dict[str, Any]:
    arcs = decode_arcs(topology)
    left, _ = natural_earth(-180.0, 0.0)
    right, _ = natural_earth(180.0, 0.0)
    _, top = natural_earth(0.0, NORTH)
    _, bottom = natural_earth(0.0, SOUTH)
    scale = WIDTH / (right - left)
    height = round((top - bottom) * scale, 1)

    def svg(point: Point) -> str:
        x, y = natural_earth(*point)
        return f"{(x - left) * scale:.1f},{(top - y) * scale:.1f}"

    countries: list[dict[str, str]] = []
    for geometry in topology["objects"]["countries"]["geometries"]:
        name = str(geometry.get("properties", {}).get("name", ""))
        if name in LEFT_OUT:
            continue
        path: list[str] = []
        for polygon in polygons_of(geometry):
            for indices in polygon:
                for ring in unwrapped(ring_points(indices, arcs)):
                    points = [svg(point) for point in ring]
                    # Consecutive points that round to the same pixel only add bytes.
                    kept = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
                    if len(kept) >= 3:
                        path.append("M" + "L".join(kept) + "Z")
        if path:
            countries.append(
                {"id": alpha3_of(geometry.get("id"), name), "name": name, "d": "".join(path)}
            )
    countries.sort(key=lambda country: (country["id"] or "~", country["name"]))
    return {
        "source": "world-atlas countries-110m (Natural Earth), Natural Earth projection",
        "width": WIDTH,
        "height": height,
        "countries": countries,
    }


def levels() -> dict[str, Any]:
    lower = (0.0, *parameters.THRESHOLDS)
    return {
        "parameters_version": parameters.VERSION,
        "levels": [
            {"level": level, "name": parameters.LEVEL_NAMES[level], "min_score": lower[level - 1]}
            for level in sorted(parameters.LEVEL_NAMES)
        ],
    }


def encoded(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def build() -> dict[str, bytes]:
    """Each asset's file name and bytes."""
    if not TOPOLOGY.exists():
        raise FileNotFoundError(f"{TOPOLOGY}: scripts/bootstrap dev installs world-atlas (npm)")
    topology = json.loads(TOPOLOGY.read_text())
    return {"world.json": encoded(world(topology)), "levels.json": encoded(levels())}


def main(argv: Sequence[str] = ()) -> int:
    out = Path(argv[0]) if argv else STATIC
    out.mkdir(parents=True, exist_ok=True)
    for name, content in build().items():
        (out / name).write_bytes(content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
