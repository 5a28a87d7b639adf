"""Procedural woodcut diagrams of the Sphaera tradition.

Each entry of :func:`illustration_groups` is one block's *content* (a ground-truth group); an edition re-cuts
or re-uses it with another line weight, mirrored, rotated on the page, scaled and degraded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .tables import clime_latitude
from .woodcut import Woodcut, circle3d, draw_projected, rotation_x, rotation_z

ZODIAC = ["Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo",
          "Libra", "Scorpius", "Sagitt.", "Capric.", "Aquar.", "Pisces"]


@dataclass(frozen=True)
class DiagramSpec:
    """Content of one woodcut: the drawing function's name and its fixed parameters."""

    group: str
    kind: str
    caption: str
    params: dict = field(default_factory=dict)


def spheres(cut: Woodcut, empyrean: bool = False, frame: str = "double") -> None:
    """The spheres of the elements and the planets as concentric circles with their names."""
    names = ["Terra", "Aqua", "Aer", "Ignis", "Luna", "Mercurius", "Venus", "Sol", "Mars", "Iupiter",
             "Saturnus", "Firmamentum", "Primum mobile"]
    if empyrean:
        names.append("Caelum empyreum")
    cut.frame(frame)
    n = len(names)
    radii = [0.2 + 0.8 * i / (n - 1) for i in range(n)]
    band_px = cut.units_to_pixels(radii[1] - radii[0])
    for i in range(n - 1, 0, -1):
        cut.circle(0, 0, radii[i], width=1.8 if i in (3, n - 1) else 1.0, fill=255)
    # The water waved like the cutters drew it, the fire in short strokes.
    cut.hatch(lambda d, p: (d.ellipse(_box(p, radii[1]), fill=255), d.ellipse(_box(p, radii[0]), fill=0)),
              angle=0, width=0.5)
    cut.circle(0, 0, radii[0], width=1.4, fill=255)
    cut.stipple(lambda d, p: d.ellipse(_box(p, radii[0] * 0.95), fill=255), density=0.35)
    cut.label(0, 0, names[0], 1.1, boxed=True)
    scale = min(1.0, 0.85 * band_px / cut.label_size)
    for i in range(1, n):
        mid = (radii[i - 1] + radii[i]) / 2
        # Alternate above and below the centre so the names do not crowd one another.
        cut.label(0, mid if i % 2 else -mid, names[i], scale, italic=i >= 4, boxed=i == 1)
    r_sol = (radii[6] + radii[7]) / 2
    for sx in (-r_sol, r_sol):
        cut.circle(sx * 0.71, -r_sol * 0.71, 0.03, width=1.0, fill=255)
        for a in range(0, 360, 30):
            t = math.radians(a)
            cut.line_segment((sx * 0.71 + 0.04 * math.cos(t), -r_sol * 0.71 + 0.04 * math.sin(t)),
                             (sx * 0.71 + 0.06 * math.cos(t), -r_sol * 0.71 + 0.06 * math.sin(t)), 0.7)
    r_luna = (radii[4] + radii[5]) / 2
    cut.polyline(cut.arc_points(r_luna * 0.71, r_luna * 0.71, 0.028, 60, 300, 30), 1.4)


def _box(p, r: float, x: float = 0.0, y: float = 0.0):
    (ax, ay), (bx, by) = p(x - r, y + r), p(x + r, y - r)
    return [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]


def eclipse(cut: Woodcut, lunar: bool = True, frame: str = "plain") -> None:
    """Eclipse geometry: the sun, the earth (or moon) and the conical shadow behind it."""
    cut.frame(frame)
    sun_x, sun_r = -0.62, 0.3
    body_x, body_r = (0.12, 0.13) if lunar else (0.22, 0.07)
    cut.circle(sun_x, 0, sun_r, width=1.4, fill=255)
    for a in range(0, 360, 15):
        t = math.radians(a)
        cut.polyline([(sun_x + 1.08 * sun_r * math.cos(t), 1.08 * sun_r * math.sin(t)),
                      (sun_x + 1.3 * sun_r * math.cos(t), 1.3 * sun_r * math.sin(t))], 0.8)
    cut.label(sun_x, 0, "Sol", 1.2)
    # External tangents of the two circles meet at the apex of the shadow cone.
    d = body_x - sun_x
    apex = sun_x + d * sun_r / (sun_r - body_r)
    half = math.asin((sun_r - body_r) / d)
    for sgn in (1, -1):
        tangent_sun = (sun_x + sun_r * math.sin(half) * -1, sgn * sun_r * math.cos(half))
        cut.polyline([tangent_sun, (apex, 0)], 0.9)
    cone_top = body_r * math.cos(half)

    def shadow(dr, p):
        dr.polygon([p(body_x, cone_top), p(apex, 0), p(body_x, -cone_top)], fill=255)

    cut.hatch(shadow, angle=60, width=0.6, cross=True)
    cut.circle(body_x, 0, body_r, width=1.3, fill=255)
    if lunar:
        cut.stipple(lambda dr, p: dr.ellipse(_box(p, body_r, body_x), fill=255), density=0.4)
        moon_x = body_x + 0.55 * (apex - body_x)
        cut.circle(moon_x, 0, 0.06, width=1.1, fill=0)
        cut.label(body_x, -body_r - 0.09, "Terra")
        cut.label(moon_x, 0.16, "Luna")
        cut.label((body_x + apex) / 2, -0.3, "Umbra terrae", italic=True)
        cut.label(0, 0.86, "Eclipsis lunae", 1.3)
    else:
        earth_x = apex - 0.02
        cut.circle(earth_x + 0.17, 0, 0.2, width=1.3, fill=255)
        cut.hatch(lambda dr, p: dr.ellipse(_box(p, 0.2, earth_x + 0.17), fill=255), angle=0, width=0.4)
        cut.label(body_x, body_r + 0.1, "Luna")
        cut.label(earth_x + 0.17, -0.32, "Terra")
        cut.label(0, 0.86, "Eclipsis solis", 1.3)


def zodiac(cut: Woodcut, letters: bool = True, frame: str = "spandrels") -> None:
    """A zodiac ring divided into the twelve signs, with letters at the divisions and diameters."""
    cut.frame(frame)
    outer, inner = 1.0, 0.76
    cut.circle(0, 0, outer, width=1.6, fill=255)
    cut.circle(0, 0, inner, width=1.2)
    for k in range(12):
        t = math.radians(90 - 30 * k)
        cut.line_segment((inner * math.cos(t), inner * math.sin(t)), (outer * math.cos(t), outer * math.sin(t)), 1.1)
        mid = t - math.radians(15)
        cut.label(0.88 * math.cos(mid), 0.88 * math.sin(mid), ZODIAC[k], 0.85, italic=True)
        if letters:
            cut.label(0.66 * math.cos(t), 0.66 * math.sin(t), "abcdefghiklm"[k])
    for k in range(6):
        t = math.radians(90 - 30 * k)
        cut.line_segment((0.58 * math.cos(t), 0.58 * math.sin(t)), (-0.58 * math.cos(t), -0.58 * math.sin(t)), 0.6)
    cut.circle(0, 0, 0.14, width=1.2, fill=255)
    cut.hatch(lambda d, p: d.ellipse(_box(p, 0.14), fill=255), angle=45, width=0.5, cross=True)


def zones(cut: Woodcut, frame: str = "plain") -> None:
    """The five zones of the earth between the tropics and polar circles, with the ecliptic."""
    cut.frame(frame)
    r = 0.88
    cut.circle(0, 0, r, width=1.8, fill=255)
    # Schematic, as in the woodcuts: parallels spaced by their latitude, not by its sine.
    ys = [r * v / 90 for v in (66.5, 23.5, -23.5, -66.5)]

    def band(y0, y1):
        def shape(d, p):
            d.ellipse(_box(p, r), fill=255)
            (_, top), (_, bot) = p(0, y0), p(0, y1)
            d.rectangle([0, 0, cut.size, min(top, bot)], fill=0)
            d.rectangle([0, max(top, bot), cut.size, cut.size], fill=0)
        return shape

    cut.hatch(band(1.0, ys[0]), angle=45, width=0.5, cross=True)
    cut.hatch(band(ys[3], -1.0), angle=45, width=0.5, cross=True)
    cut.hatch(band(ys[1], ys[2]), angle=0, width=0.5)
    for y in ys:
        half = math.sqrt(max(0.0, r * r - y * y))
        cut.line_segment((-half, y), (half, y), 1.2)
        cut.line_segment((-half, y + 0.02), (half, y + 0.02), 0.6)
    cut.line_segment((0, -0.98), (0, 0.98), 1.0)
    e = math.radians(23.5)
    cut.line_segment((-r * math.cos(e), -r * math.sin(e)), (r * math.cos(e), r * math.sin(e)), 0.9)
    centres = [(r + ys[0]) / 2, (ys[0] + ys[1]) / 2, 0.0, (ys[2] + ys[3]) / 2, (ys[3] - r) / 2]
    for y, name in zip(centres, ["Zona frigida", "Zona temperata", "Zona torrida", "Zona temperata",
                                 "Zona frigida"], strict=True):
        cut.label(0.35 if y else -0.35, y, name, 0.9, boxed=name != "Zona temperata")
    cut.label(0, 1.04, "Polus arcticus", 0.85, italic=True)
    cut.label(0, -1.04, "Polus antarcticus", 0.85, italic=True)


def climes(cut: Woodcut, frame: str = "double") -> None:
    """A map of the inhabited quarter: the seven climes as bands of latitude, meridians converging."""
    cut.frame(frame)
    lat_max = 56.0
    edges = [clime_latitude(12.75 + 0.5 * k, 23.5) for k in range(8)]

    def y_of(lat):
        return -0.85 + 1.75 * lat / lat_max

    def half_width(lat):
        return 0.95 * math.cos(math.radians(lat)) ** 0.7

    lats = np.linspace(0, lat_max, 40)
    for sgn in (-1, 1):
        cut.polyline([(sgn * half_width(v), y_of(v)) for v in lats], 1.6)
        cut.polyline([(sgn * 0.5 * half_width(v), y_of(v)) for v in lats], 0.6)
    for lat in [0.0, lat_max] + edges:
        cut.line_segment((-half_width(lat), y_of(lat)), (half_width(lat), y_of(lat)), 1.4 if lat in edges else 1.0)

    def torrid(d, p):
        d.polygon([p(-half_width(0), y_of(0)), p(half_width(0), y_of(0)),
                   p(half_width(edges[0]), y_of(edges[0])), p(-half_width(edges[0]), y_of(edges[0]))], fill=255)

    def north(d, p):
        d.polygon([p(-half_width(edges[7]), y_of(edges[7])), p(half_width(edges[7]), y_of(edges[7])),
                   p(half_width(lat_max), y_of(lat_max)), p(-half_width(lat_max), y_of(lat_max))], fill=255)

    cut.hatch(torrid, angle=30, width=0.5)
    cut.hatch(north, angle=-30, width=0.5, cross=True)
    names = ["Meroes", "Syenes", "Alexandriae", "Rhodi", "Romae", "Borysthenis", "Riphaeorum"]
    for k in range(7):
        y = (y_of(edges[k]) + y_of(edges[k + 1])) / 2
        cut.label(-0.62, y, ["I", "II", "III", "IV", "V", "VI", "VII"][k], 0.9)
        cut.label(0.12, y, f"Clima {names[k]}", 0.8, italic=True)
    cut.label(0, y_of(edges[0] / 2), "Zona torrida", 0.9, boxed=True)
    cut.label(0, y_of((edges[7] + lat_max) / 2), "Terra incognita", 0.9, boxed=True)
    cut.label(0, -1.0, "Aequinoctialis", 0.9, italic=True)


def armillary(cut: Woodcut, latitude: float = 48.0, stand: bool = True, frame: str = "none") -> None:
    """An armillary sphere in perspective: meridian, horizon, equator, tropics, polar circles, zodiac band."""
    cut.frame(frame)
    eps = 23.5
    view = rotation_x(-12)
    axis = rotation_z(-(90 - latitude)) @ np.array([0.0, 1.0, 0.0])
    scale = 0.82
    cut.circle(0, 0, scale * 1.04, width=1.8)
    cut.circle(0, 0, scale * 0.98, width=0.8)
    for delta in (0.0, eps, -eps, 90 - eps, eps - 90):
        s = math.sin(math.radians(delta))
        draw_projected(cut, scale * circle3d(axis, s, math.cos(math.radians(delta))), view, 1.0)
    ecliptic_normal = rotation_z(eps) @ axis
    for off in (-0.1, 0.1):
        draw_projected(cut, scale * circle3d(ecliptic_normal, off, math.sqrt(1 - off * off)), view, 1.2)
    band = scale * circle3d(ecliptic_normal, 0.0, 1.0, 13)
    for pt in band[:-1]:
        a = (pt + 0.1 * scale * ecliptic_normal) @ view.T
        b = (pt - 0.1 * scale * ecliptic_normal) @ view.T
        cut.line_segment((a[0], a[1]), (b[0], b[1]), 0.8)
    draw_projected(cut, scale * 1.12 * circle3d(np.array([0, 1.0, 0]), 0.0, 1.0), view, 2.0, back=0.0)
    pole = (scale * 1.22 * axis) @ view.T
    cut.line_segment((pole[0], pole[1]), (-pole[0], -pole[1]), 1.4)
    cut.circle(0, 0, 0.09, width=1.0, fill=255)
    cut.stipple(lambda d, p: d.ellipse(_box(p, 0.09), fill=255), density=0.6)
    if stand:
        cut.polyline([(-0.03, -scale * 1.04), (-0.05, -1.0), (-0.05, -1.08), (-0.25, -1.16), (0.25, -1.16),
                      (0.05, -1.08), (0.05, -1.0), (0.03, -scale * 1.04)], 1.3)
        cut.hatch(lambda d, p: d.polygon([p(-0.25, -1.16), p(0.25, -1.16), p(0.05, -1.08), p(-0.05, -1.08)],
                                         fill=255), angle=90, width=0.5)
    tip = 0.9 * np.array(pole[:2]) / max(1e-6, float(np.hypot(pole[0], pole[1])))
    cut.label(tip[0] + 0.1, tip[1] + 0.12, "Polus", 0.85, italic=True)
    cut.label(-0.63, -0.04, "Horizon", 0.85, italic=True)


DRAWINGS = {"spheres": spheres, "eclipse": eclipse, "zodiac": zodiac, "zones": zones, "climes": climes,
            "armillary": armillary}


def illustration_groups() -> list[DiagramSpec]:
    """All woodcut contents of the demo corpus, one per ground-truth group, in a fixed order."""
    return [
        DiagramSpec("sphaerae-elementorum", "spheres", "Figura sphaerarum mundi", {"empyrean": False}),
        DiagramSpec("sphaerae-empyreum", "spheres", "Ordo sphaerarum cum caelo empyreo",
                    {"empyrean": True, "frame": "spandrels"}),
        DiagramSpec("eclipsis-lunae", "eclipse", "Figura eclipsis lunaris", {"lunar": True}),
        DiagramSpec("eclipsis-solis", "eclipse", "Figura eclipsis solaris", {"lunar": False, "frame": "double"}),
        DiagramSpec("zodiacus", "zodiac", "Circulus signorum", {"letters": True}),
        DiagramSpec("zonae", "zones", "Quinque zonae", {}),
        DiagramSpec("climata", "climes", "Descriptio climatum", {}),
        DiagramSpec("sphaera-armillaris", "armillary", "Sphaera materialis", {"latitude": 48.0}),
        DiagramSpec("sphaera-recta", "armillary", "Sphaera recta", {"latitude": 0.0, "stand": False,
                                                                    "frame": "plain"}),
    ]


def render_diagram(spec: DiagramSpec, size: int = 420, line: float = 1.6, flip: bool = False,
                   rotation: float = 0.0, typeface: str = "EB Garamond", hatch_spacing: float = 5.0,
                   seed: int = 0) -> Image.Image:
    """Cut one woodcut block and turn it on the page.

    Parameters
    ----------
    spec : DiagramSpec
        The block's content.
    size : int
        Side of the block in pixels before rotation.
    line : float
        Line weight in pixels.
    flip : bool
        Re-cut reversed (mirrored geometry, readable labels).
    rotation : float
        Degrees counter-clockwise (90/180/270 for blocks turned on the page, small values for careless setting).
    typeface : str
        Typeface of the labels.
    hatch_spacing : float
        Pixels between hatching lines.
    seed : int
        Seed of the hand-cut irregularities.

    Returns
    -------
    PIL.Image.Image
        Grey block (``"L"``, white paper), enlarged to hold the turned block.
    """
    if spec.kind not in DRAWINGS:
        raise ValueError(f"unknown diagram kind {spec.kind!r}; known: {sorted(DRAWINGS)}")
    cut = Woodcut(int(size), line, flip, typeface, np.random.default_rng(seed), hatch_spacing)
    DRAWINGS[spec.kind](cut, **spec.params)
    block = cut.image
    if rotation % 360:
        block = block.rotate(rotation, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    return block
