"""Print and scan defects: skew, crop, scale (tracking digit boxes), ink bleed, broken type, blur, noise,
paper colour, show-through and binarisation.

Pages are composed in grey (``"L"``, paper 255, ink 0); geometry is applied once as a single affine map so
that digit boxes can be carried through it exactly, and the colour of paper and ink comes last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Box = tuple[str, int, int, int, int]


@dataclass(frozen=True)
class Defects:
    """How one printed and scanned page went wrong.

    Attributes
    ----------
    skew : float
        Rotation of the page on the scanner, degrees (counter-clockwise).
    scale : float
        Scan resolution relative to the composed page.
    crop : tuple of float
        Fractions of width/height cut away on the left, top, right and bottom.
    bleed : int
        0 none, 1 or 2: ink spreading by that many pixels.
    broken : float
        Share of the ink lost to worn type and uneven inking, 0..1.
    blur : float
        Gaussian blur radius in pixels.
    noise : float
        Standard deviation of grain noise in grey levels.
    specks : int
        Number of dirt specks.
    show_through : float
        Opacity of the mirrored verso bleeding through the paper, 0..1.
    binarise : bool
        Whether the scan was thresholded to black and white.
    paper : tuple of int
        RGB colour of the paper.
    ink : tuple of int
        RGB colour of the ink.
    """

    skew: float = 0.0
    scale: float = 1.0
    crop: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    bleed: int = 0
    broken: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    specks: int = 0
    show_through: float = 0.0
    binarise: bool = False
    paper: tuple[int, int, int] = (236, 226, 204)
    ink: tuple[int, int, int] = (38, 30, 26)


def sample_defects(rng: np.random.Generator, severity: float = 1.0) -> Defects:
    """Draw plausible defects for one page; ``severity`` scales how bad they are."""
    s = float(severity)
    binarise = bool(rng.random() < 0.15)
    paper = tuple(int(v) for v in np.clip(np.array([238, 228, 205]) + rng.normal(0, 3, 3)
                                          - rng.uniform(0, 18) * np.array([0.4, 0.7, 1.2]), 150, 255))
    return Defects(
        skew=float(rng.normal(0, 0.8 * s)),
        scale=float(rng.uniform(0.92, 1.05)),
        crop=tuple(float(v) for v in rng.uniform(0, 0.035 * s, 4)),
        bleed=int(rng.choice([0, 0, 1, 1, 2])) if s > 1.0 else int(rng.random() < 0.4),
        broken=float(rng.uniform(0.0, 0.25 * s)),
        blur=float(rng.uniform(0.2, 0.35 * s + 0.45)),
        noise=float(rng.uniform(3, 14 * s + 3)),
        specks=int(rng.integers(0, int(40 * s) + 1)),
        show_through=float(rng.uniform(0, 0.12 * s)) if rng.random() < 0.5 else 0.0,
        binarise=binarise,
        paper=(255, 255, 255) if binarise else paper,
        # Printer's ink: black to brownish black.
        ink=(0, 0, 0) if binarise else tuple(int(v) for v in np.array([34, 28, 24]) * rng.uniform(0.5, 1.5)
                                               + rng.uniform(0, 12) * np.array([1.0, 0.6, 0.2])),
    )


def geometry_matrix(size: tuple[int, int], skew: float, scale: float,
                    crop: tuple[float, float, float, float]) -> tuple[np.ndarray, tuple[int, int]]:
    """Forward affine map (3x3, composed page -> scanned page) and the scanned page size.

    Rotation by ``skew`` about the page centre, then the crop, then the scale.
    """
    w, h = size
    left, top, right, bottom = crop
    cx, cy = w / 2, h / 2
    a = math.radians(skew)
    # Image y points down, so a counter-clockwise turn on screen is a clockwise one in these coordinates.
    rot = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    back = np.array([[1, 0, cx - left * w], [0, 1, cy - top * h], [0, 0, 1]])
    zoom = np.diag([scale, scale, 1.0])
    matrix = zoom @ back @ rot @ to_centre
    out_w = max(1, int(round(w * (1 - left - right) * scale)))
    out_h = max(1, int(round(h * (1 - top - bottom) * scale)))
    return matrix, (out_w, out_h)


def warp(image: Image.Image, matrix: np.ndarray, size: tuple[int, int], fill: int = 255) -> Image.Image:
    """Apply the forward affine ``matrix`` to ``image`` (continuous pixel coordinates, edges at integers)."""
    inv = np.linalg.inv(matrix)
    data = (inv[0, 0], inv[0, 1], inv[0, 2], inv[1, 0], inv[1, 1], inv[1, 2])
    return image.transform(size, Image.Transform.AFFINE, data=data, resample=Image.Resampling.BILINEAR,
                           fillcolor=fill)


def map_boxes(boxes: list[Box], matrix: np.ndarray, size: tuple[int, int], keep: float = 0.6) -> list[Box]:
    """Carry boxes through ``matrix``; clip them to ``size`` and drop those mostly cut away by the crop.

    The new box is the axis-aligned hull of the four mapped corners, rounded outwards.
    """
    out = []
    w, h = size
    for digit, x0, y0, x1, y1 in boxes:
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], dtype=float).T
        mapped = matrix @ corners
        nx0, ny0 = mapped[0].min(), mapped[1].min()
        nx1, ny1 = mapped[0].max(), mapped[1].max()
        area = (nx1 - nx0) * (ny1 - ny0)
        cx0, cy0, cx1, cy1 = max(nx0, 0), max(ny0, 0), min(nx1, w), min(ny1, h)
        if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < keep * area:
            continue
        out.append((digit, int(math.floor(cx0)), int(math.floor(cy0)), int(math.ceil(cx1)), int(math.ceil(cy1))))
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency random field in [0, 1] of ``shape`` (bicubic upsampling of a coarse grid)."""
    h, w = shape
    gh = max(2, int(cells * h / max(h, w)) + 2)
    gw = max(2, int(cells * w / max(h, w)) + 2)
    coarse = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    return np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def degrade_ink(gray: Image.Image, d: Defects, rng: np.random.Generator) -> np.ndarray:
    """Ink-level defects on a grey page; returns ink coverage in [0, 1] (1 = full ink)."""
    img = gray
    ink = 1.0 - np.asarray(img, dtype=np.float32) / 255.0
    if d.bleed:
        # Ink spreading into the paper by about a pixel: half strength, or full for over-inked formes.
        spread = 1.0 - np.asarray(img.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.GaussianBlur(0.6)),
                                  dtype=np.float32) / 255.0
        ink = np.maximum(ink, spread * (0.45 if d.bleed == 1 else 0.7))
    h, w = ink.shape
    if d.broken > 0:
        # Worn type and uneven inking: fine grain plus a coarse field of weak impressions.
        grain = rng.random((h, w), dtype=np.float32)
        weak = _smooth_field(rng, (h, w), 14)
        # A bitonal scan already drops faint ink at the threshold: wear it less, or digits vanish entirely.
        broken = d.broken * (0.5 if d.binarise else 1.0)
        keep = grain > broken * (0.4 + weak)
        ink = ink * np.where(keep, 1.0, 0.25)
    if d.show_through > 0:
        verso = np.asarray(gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                           .filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)
        ink = np.maximum(ink, d.show_through * (1.0 - verso / 255.0))
    if d.specks:
        # Dirt and foxing: small round specks of varying darkness.
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        for y, x, r, v in zip(rng.uniform(0, h, d.specks), rng.uniform(0, w, d.specks),
                              rng.uniform(0.6, 2.2, d.specks), rng.uniform(0.4, 1.0, d.specks), strict=True):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=int(255 * v))
        ink = np.maximum(ink, np.asarray(layer, dtype=np.float32) / 255.0)
    return np.clip(ink, 0.0, 1.0)


def finish(ink: np.ndarray, d: Defects, rng: np.random.Generator, colour: bool = True) -> Image.Image:
    """Blur, grain, binarisation and colouring of an ink-coverage map.

    Returns a palette image (mode ``"P"``, index = grey level, palette = paper-to-ink colours) when ``colour``,
    else a grey image.
    """
    h, w = ink.shape
    img = Image.fromarray((255 * (1.0 - ink)).astype(np.uint8))
    if d.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(d.blur))
    value = np.asarray(img, dtype=np.float32)
    if not d.binarise:
        value = value - 22.0 * _smooth_field(rng, (h, w), 6)  # uneven paper tone
    value = value + d.noise * rng.standard_normal((h, w), dtype=np.float32)
    if d.binarise:
        value = np.where(value > 185, 255.0, 0.0)  # scanners keep faint ink: a high threshold
    grey = Image.fromarray(np.clip(value + 0.5, 0, 255).astype(np.uint8), "L")
    if not colour:
        return grey
    # Paper and ink colours through a palette indexed by the grey level: the page is stored as a palette
    # image whose indices are its grey values (so even a naive reader sees a sensible grey page), and PNG
    # encodes a third of the bytes of RGB. ``convert("RGB")`` gives the coloured page.
    t = np.arange(256) / 255.0
    palette = np.stack([np.round(p * t + k * (1 - t)) for p, k in zip(d.paper, d.ink, strict=True)], axis=1)
    page = grey.copy()
    page.putpalette(palette.astype(np.uint8).ravel().tolist())  # an "L" image becomes "P" with this palette
    return page


def print_and_scan(gray: Image.Image, boxes: list[Box], d: Defects, rng: np.random.Generator,
                   colour: bool = True) -> tuple[Image.Image, list[Box]]:
    """Apply all defects to a composed grey page; return the scan and the digit boxes in its pixels.

    The scan is a palette image (see :func:`finish`) when ``colour``, else grey.
    """
    matrix, size = geometry_matrix(gray.size, d.skew, d.scale, d.crop)
    ink = degrade_ink(gray, d, rng)
    inked = Image.fromarray((255 * (1.0 - ink)).astype(np.uint8))
    scanned = warp(inked, matrix, size)
    return finish(1.0 - np.asarray(scanned, dtype=np.float32) / 255.0, d, rng, colour), map_boxes(boxes, matrix, size)
