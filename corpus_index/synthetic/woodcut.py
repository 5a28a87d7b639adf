"""A small drawing surface with a woodcut look: black lines on white, hatching, unmirrored labels.

Diagrams are drawn in unit coordinates (origin at the centre, y up, the main circle has radius 1). A re-cut
block copied from a print comes out mirrored: ``flip=True`` mirrors every shape, while labels, set in type
and inserted into the block, stay readable.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from .fonts import Pen

Point = tuple[float, float]


class Woodcut:
    """Drawing surface for one woodcut block.

    Parameters
    ----------
    size : int
        Side of the square block in pixels.
    line : float
        Base line width in pixels (the cutter's knife).
    flip : bool
        Mirror the geometry left-right.
    typeface : str
        Typeface of the labels.
    rng : numpy.random.Generator
        Source of the small irregularities of a hand-cut line.
    hatch_spacing : float
        Distance between hatching lines in pixels.
    """

    def __init__(self, size: int, line: float, flip: bool, typeface: str, rng: np.random.Generator,
                 hatch_spacing: float = 5.0):
        self.size = size
        self.radius = 0.42 * size
        self.line = max(1.0, line)
        self.flip = flip
        self.rng = rng
        self.hatch_spacing = hatch_spacing
        self.image = Image.new("L", (size, size), 255)
        self.draw = ImageDraw.Draw(self.image)
        self.pen = Pen(self.image, typeface, use_long_s=True)
        self.label_size = max(9, int(size / 30))

    def p(self, x: float, y: float) -> Point:
        """Unit coordinates to block pixels."""
        if self.flip:
            x = -x
        return (self.size / 2 + x * self.radius, self.size / 2 - y * self.radius)

    def w(self, factor: float = 1.0) -> int:
        return max(1, int(round(self.line * factor)))

    def polyline(self, points: list[Point], width: float = 1.0, closed: bool = False, wobble: float = 0.0) -> None:
        """Connect unit-coordinate ``points``; ``wobble`` adds the jitter of a hand-cut line (in pixels)."""
        pix = [self.p(x, y) for x, y in points]
        if wobble:
            jitter = self.rng.normal(0, wobble, (len(pix), 2))
            pix = [(x + dx, y + dy) for (x, y), (dx, dy) in zip(pix, jitter, strict=True)]
        if closed:
            pix.append(pix[0])
        self.draw.line(pix, fill=0, width=self.w(width), joint="curve")

    def circle(self, x: float, y: float, r: float, width: float = 1.0, fill: int | None = None) -> None:
        cx, cy = self.p(x, y)
        rp = r * self.radius
        box = [cx - rp, cy - rp, cx + rp, cy + rp]
        if fill is not None:
            self.draw.ellipse(box, fill=fill)
        if width > 0:
            self.draw.ellipse(box, outline=0, width=self.w(width))

    def arc_points(self, x: float, y: float, r: float, a0: float = 0.0, a1: float = 360.0, n: int = 120):
        return [(x + r * math.cos(math.radians(a)), y + r * math.sin(math.radians(a)))
                for a in np.linspace(a0, a1, n)]

    def line_segment(self, a: Point, b: Point, width: float = 1.0) -> None:
        self.draw.line([self.p(*a), self.p(*b)], fill=0, width=self.w(width))

    def hatch(self, shape, angle: float = 45.0, spacing: float | None = None, width: float = 0.6,
              cross: bool = False) -> None:
        """Hatch the region that ``shape(draw, p)`` paints white on a mask (``p`` maps unit to pixels)."""
        spacing = spacing or self.hatch_spacing
        mask = Image.new("L", (self.size, self.size), 0)
        shape(ImageDraw.Draw(mask), self.p)
        layer = Image.new("L", (self.size, self.size), 255)
        ld = ImageDraw.Draw(layer)
        angles = [angle, angle + 90] if cross else [angle]
        for a in angles:
            t = math.radians(a)
            dx, dy = math.cos(t), math.sin(t)
            nx, ny = -dy, dx
            c = self.size / 2
            reach = self.size
            k = -reach
            while k <= reach:
                ox, oy = c + nx * k, c + ny * k
                ld.line([(ox - dx * reach, oy - dy * reach), (ox + dx * reach, oy + dy * reach)], fill=0,
                        width=self.w(width))
                k += spacing
        hatched = Image.composite(layer, Image.new("L", layer.size, 255), mask)
        self.image.paste(ImageChops.darker(self.image, hatched))

    def stipple(self, shape, density: float = 0.08) -> None:
        """Dots inside a region (engraved earth, clouds)."""
        mask = Image.new("L", (self.size, self.size), 0)
        shape(ImageDraw.Draw(mask), self.p)
        m = np.asarray(mask) > 0
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            return
        pick = self.rng.random(len(xs)) < density / 4
        for x, y in zip(xs[pick], ys[pick], strict=True):
            self.draw.point((int(x), int(y)), fill=0)

    def label(self, x: float, y: float, text: str, scale: float = 1.0, italic: bool = False,
              boxed: bool = False) -> None:
        """Set ``text`` centred on a unit-coordinate point; it is never mirrored.

        ``boxed`` clears a white label field first, as cutters left for type set into hatching.
        """
        size = max(7, int(self.label_size * scale))
        px, py = self.p(x, y)
        if boxed:
            half = self.pen.width(text, size, italic) / 2 + size * 0.3
            self.draw.rectangle([px - half, py - size * 0.6, px + half, py + size * 0.6], fill=255, outline=0,
                                width=self.w(0.6))
        self.pen.centred(px, py + size * 0.35, text, size, italic)

    def units_to_pixels(self, length: float) -> float:
        return length * self.radius

    def frame(self, style: str) -> None:
        """Border of the block: ``plain``, ``double`` or ``spandrels`` (hatched corners outside the circle)."""
        if style == "none":
            return
        s, m = self.size, int(self.size * 0.02) + 1
        self.draw.rectangle([m, m, s - m - 1, s - m - 1], outline=0, width=self.w(1.4))
        if style == "double":
            k = m + self.w(1.4) + 3
            self.draw.rectangle([k, k, s - k - 1, s - k - 1], outline=0, width=self.w(0.8))
        if style == "spandrels":
            rad = self.radius * 1.12

            def outside(d, p):
                d.rectangle([m, m, s - m, s - m], fill=255)
                cx, cy = p(0, 0)
                d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=0)

            self.hatch(outside, angle=30, spacing=self.hatch_spacing * 0.8, width=0.5)
            self.circle(0, 0, 1.12, width=1.2)


def rotation_x(angle: float) -> np.ndarray:
    a = math.radians(angle)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def rotation_z(angle: float) -> np.ndarray:
    a = math.radians(angle)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def circle3d(normal: np.ndarray, offset: float, radius: float, n: int = 160) -> np.ndarray:
    """Points (n, 3) of the circle of ``radius`` around ``normal`` at distance ``offset`` from the centre."""
    normal = normal / np.linalg.norm(normal)
    helper = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    t = np.linspace(0, 2 * math.pi, n)
    return offset * normal + radius * (np.outer(np.cos(t), u) + np.outer(np.sin(t), v))


def draw_projected(cut: Woodcut, points: np.ndarray, view: np.ndarray, width: float = 1.0,
                   back: float = 0.45) -> None:
    """Orthographic projection of 3-D points; the far half is cut thinner, as the armillary makers did."""
    projected = points @ view.T
    front = projected[:, 2] >= 0
    for i in range(len(projected) - 1):
        a, b = projected[i], projected[i + 1]
        cut.line_segment((a[0], a[1]), (b[0], b[1]), width if front[i] and front[i + 1] else width * back)
