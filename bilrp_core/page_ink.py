"""Page ink and print size: a scan at any resolution, brought to the print size the digit detector learnt.

Scans of tables come from many cameras and libraries, at any resolution, on yellowed paper, with faded or dark
ink. The bigram network's detector is bias-free, so its output scales with the ink's darkness, and it learnt
digits of one size. :func:`to_ink` turns a page into ink in [0, 1] with the darkest strokes at 1;
:func:`estimate_component_height` measures the print size as the median height of inked connected components
that look like glyphs; :func:`normalise_page` rescales the ink so that this height is the learnt one.
"""

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .detector import MAP_STRIDE

#: Median component height (px) the detector is trained at; the shipped weights file stores its own value.
DEFAULT_COMPONENT_HEIGHT = 12.0
#: Longest side of a normalised page; larger pages are shrunk further (keeps explanation memory bounded).
MAX_SIDE = 1400
#: Ink levels tried when measuring print size: faint print next to dark rules breaks up above 0.5 (to_ink scales
#: the darkest ink, often the rules, to 1), heavy print merges below it.
INK_LEVELS = (0.25, 0.35, 0.5)


def to_ink(image):
    """PIL page (colour or grey, any mode) -> ink array in [0, 1], 1 = black, paper tone and ink fading removed.

    The bias-free detector's output scales with the ink's darkness, so faded or grey print is stretched until its
    darkest strokes reach 1; a page whose darkest ink stays below 0.3 (blank paper, dust) is left as it is.
    """
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    paper = float(np.percentile(grey, 90))  # yellowed paper counts as white
    ink = np.clip((paper - grey) / max(paper, 1e-3), 0.0, 1.0)
    darkest = float(np.percentile(ink, 99.5))
    return np.clip(ink / darkest, 0.0, 1.0) if darkest > 0.3 else ink


def glyph_component_heights(ink, threshold):
    """Heights (px) of the connected components of ``ink > threshold`` that look like glyphs."""
    mask = ink > threshold
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(0, dtype=int)
    slices = ndimage.find_objects(labels)
    heights = np.array([s[0].stop - s[0].start for s in slices])
    widths = np.array([s[1].stop - s[1].start for s in slices])
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    fill = areas / (heights * widths)
    # glyphs: taller than dust, not solid blots (specks of ink are nearly filled), not rules or whole figures
    glyph = (heights >= 5) & (heights <= ink.shape[0] / 8) & (widths <= 3 * heights) & (areas >= 12) & (fill < 0.75)
    return heights[glyph]


def estimate_component_height(ink, levels=INK_LEVELS):
    """Median height (px) of inked connected components that look like glyphs, or None if there are too few.

    The page is cut at each ink level in ``levels`` and measured at the one that splits it into the most
    glyph-like components: there the glyphs neither break into pieces nor run together (one fixed level fails
    on faint print beside dark rules, whose glyphs break up).

    Parameters
    ----------
    ink : ndarray (H, W)
        Ink in [0, 1] (1 = black).
    levels : sequence of float
        Ink levels to try.
    """
    heights = max((glyph_component_heights(ink, level) for level in levels), key=len)
    if len(heights) < 5:
        return None
    return float(np.median(heights))


def normalise_page(image, component_height=DEFAULT_COMPONENT_HEIGHT, max_side=MAX_SIDE):
    """Rescale a page so that its print has the size the detector learnt; returns (ink tensor (1,1,H,W), scale).

    Pages whose print size cannot be measured (no glyph-like components) keep their size, capped at max_side.
    Height and width are rounded to multiples of :data:`~bilrp_core.detector.MAP_STRIDE`, so that the digit
    maps cover the page exactly; ``scale`` is (sx, sy), normalised pixels per original pixel.
    """
    ink = to_ink(image)
    measured = estimate_component_height(ink)
    scale = component_height / measured if measured else 1.0
    scale = min(scale, max_side / max(ink.shape))
    height = max(MAP_STRIDE, int(round(ink.shape[0] * scale / MAP_STRIDE)) * MAP_STRIDE)
    width = max(MAP_STRIDE, int(round(ink.shape[1] * scale / MAP_STRIDE)) * MAP_STRIDE)
    resized = Image.fromarray((ink * 255).astype(np.uint8)).resize((width, height), resample=Image.BILINEAR)
    tensor = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)[None, None]
    return tensor, (width / ink.shape[1], height / ink.shape[0])
