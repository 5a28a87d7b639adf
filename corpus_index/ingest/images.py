"""Safe image opening, validation, cropping and thumbnails.

Scans come from outside: a file may be empty, truncated, not an image at all, or a decompression bomb (a
small file that claims billions of pixels). :func:`open_validated` checks the header before decoding anything,
decodes the whole image (so a truncated file fails here, not later in a feature build) and raises
:class:`ImageRejected` whose message is the reason shown in ingest reports, in plain words ("image too large:
W×H pixels, limit N pixels", never Pillow's own wording). Animated GIFs and multi-page TIFFs give their first
frame; the number of frames is kept in ``image.info["frames"]`` so that ingest reports can say so.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from corpus_index.storage.atomic import atomic_write

DEFAULT_MAX_PIXELS = 60_000_000
THUMB_SIZE = 256
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".webp", ".bmp"})
# Formats Pillow may try; anything else (e.g. a PDF or an SVG renamed .jpg) is "not an image".
ALLOWED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "JPEG2000", "GIF", "BMP")


class ImageRejected(ValueError):
    """An image that cannot go into the corpus; ``str(error)`` is the reason shown in reports."""


def _too_large(error: Exception, max_pixels: int) -> ImageRejected:
    """Pillow's refusal of a huge image (its "decompression bomb" error), in plain words with our limit."""
    claimed = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
    return ImageRejected(f"image too large: {size}, limit {_limit(max_pixels):,} pixels")


def _limit(max_pixels: int) -> int:
    """The pixel limit in force: ours, or Pillow's guard against decompression bombs if that is lower."""
    return min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white, 16-bit and float rescaled)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float scans: scale the actual range to 0..255 instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_validated(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, check and fully decode an image; return it as RGB with its EXIF orientation applied.

    Parameters
    ----------
    source : path-like or bytes
        A file, or the bytes of one (e.g. fetched from a IIIF server).
    max_pixels : int
        Largest accepted width x height; larger images are rejected before they are decoded.

    Raises
    ------
    ImageRejected
        With the reason: empty file, not an image, too large (more pixels than ``max_pixels`` or than Pillow's
        limit against decompression bombs), truncated or corrupt.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageRejected("empty file (0 bytes)")
        handle = io.BytesIO(bytes(source))
    else:
        if os.path.getsize(source) == 0:
            raise ImageRejected("empty file (0 bytes)")
        handle = open(source, "rb")
    with handle:
        try:
            image = Image.open(handle, formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise _too_large(error, max_pixels) from None
        except UnidentifiedImageError:
            raise ImageRejected("not an image (unrecognised or unsupported format)") from None
        except Exception as error:  # Pillow raises many types on garbage headers
            raise ImageRejected(f"truncated or corrupt image ({type(error).__name__}: {error})") from None
        with image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageRejected(f"image has no pixels ({width}x{height})")
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that (it raises above); we refuse both. The
            # check is ours rather than a warnings filter because warnings.catch_warnings is not thread-safe.
            limit = _limit(max_pixels)
            if width * height > limit:
                raise ImageRejected(f"image too large: {width}×{height} pixels, limit {limit:,} pixels")
            try:
                frames = int(getattr(image, "n_frames", 1) or 1)
                image.seek(0)
                image.load()
                oriented = ImageOps.exif_transpose(image)
                result = to_rgb(oriented)
                result.info["frames"] = frames
                return result
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
                raise _too_large(error, max_pixels) from None
            except Exception as error:  # truncated data surfaces as OSError, SyntaxError, zlib.error, ...
                raise ImageRejected(f"truncated or corrupt image ({type(error).__name__}: {error})") from None


def parse_region(value: Any) -> tuple[int, int, int, int] | None:
    """Parse a region ``"x,y,w,h"`` (or a 4-sequence) into integers; ``None``/``""`` mean the whole image.

    Raises
    ------
    ValueError
        Naming the bad value, if it is not four whole numbers with ``x, y >= 0`` and ``w, h > 0``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"bad region {value!r}: expected 'x,y,w,h' in whole pixels") from None
    if len(numbers) != 4 or not all(math.isfinite(n) and n == int(n) and abs(n) < 2**31 for n in numbers):
        raise ValueError(f"bad region {value!r}: expected 'x,y,w,h' in whole pixels")
    x, y, w, h = (int(n) for n in numbers)
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ValueError(f"bad region {value!r}: need x, y >= 0 and w, h > 0")
    return x, y, w, h


def format_region(value: Any) -> str | None:
    """The canonical ``"x,y,w,h"`` string of a region, or ``None`` for the whole image."""
    region = parse_region(value)
    return None if region is None else ",".join(str(n) for n in region)


def check_region(region: tuple[int, int, int, int], width: int, height: int) -> None:
    """Raise :class:`ImageRejected` unless region ``(x, y, w, h)`` lies inside a ``width x height`` image."""
    x, y, w, h = region
    if x + w > width or y + h > height:
        raise ImageRejected(f"region {x},{y},{w},{h} lies outside the {width}x{height} image")


def crop_region(image: Image.Image, region: tuple[int, int, int, int] | None) -> Image.Image:
    """The part of ``image`` inside ``region`` (the whole image for ``None``)."""
    if region is None:
        return image
    x, y, w, h = region
    check_region(region, image.width, image.height)
    return image.crop((x, y, x + w, y + h))


def load_item_image(path: str | Path, region: str | tuple | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An item's image: the file at ``path`` (validated, RGB, EXIF-oriented), cropped to ``region`` if given.

    Region strings are ``"x,y,w,h"`` as stored by :class:`corpus_index.storage.store.Store`.
    """
    return crop_region(open_validated(path, max_pixels=max_pixels), parse_region(region))


def make_thumbnail(image: Image.Image, size: int = THUMB_SIZE) -> Image.Image:
    """A copy of ``image`` scaled to fit in ``size x size`` (never enlarged)."""
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    return thumb


def save_jpeg_atomic(image: Image.Image, dest: str | Path, quality: int = 85) -> Path:
    """Write ``image`` as a JPEG to ``dest`` atomically (temporary file + rename)."""

    def write(tmp: str) -> None:
        image.convert("RGB").save(tmp, format="JPEG", quality=quality)

    return atomic_write(dest, write)


def write_bytes_atomic(data: bytes, dest: str | Path) -> Path:
    """Write ``data`` to ``dest`` atomically (temporary file + rename)."""
    return atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))


def thumb_relpath(digest: str, region: tuple[int, int, int, int] | None) -> str:
    """Where an item's thumbnail lives, relative to the corpus root (stable for the same hash + region)."""
    from corpus_index.storage.layout import Layout

    return Layout.thumb_relpath(digest, "" if region is None else "_" + "_".join(str(n) for n in region))


def write_thumbnail(root: str | Path, image: Image.Image, digest: str,
                    region: tuple[int, int, int, int] | None, size: int = THUMB_SIZE) -> str:
    """Write the thumbnail of ``image`` (cropped to ``region``) under ``root/thumbs``; return its path."""
    relpath = thumb_relpath(digest, region)
    save_jpeg_atomic(make_thumbnail(crop_region(image, region), size), Path(root) / relpath)
    return relpath
