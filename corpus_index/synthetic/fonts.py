"""Early-modern typefaces and a pen that records the ink box of every digit it prints.

The typefaces come from the ``fontpkg-*`` packages (installed from PyPI), so nothing is downloaded at run time.
Old-style figures (whose 3, 4, 5, 7, 9 descend below the line) are switched on with the OpenType feature
``onum`` through Pillow's raqm layout; Cormorant Garamond has them by default and Crimson Text has only lining
figures, which gives the corpus both kinds.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

DIGITS = "0123456789"


@dataclass(frozen=True)
class Typeface:
    """One typeface of the demo corpus.

    Attributes
    ----------
    name : str
        Display name, the key in :data:`TYPEFACES`.
    path : str
        File of the roman font.
    italic_path : str
        File of the italic font.
    oldstyle : bool
        Whether its figures are printed old-style (descending 3, 4, 5, 7, 9).
    features : tuple of str
        OpenType features passed to raqm for every run of text.
    weight : str or None
        Named instance of a variable font (``None`` for static fonts).
    """

    name: str
    path: str
    italic_path: str
    oldstyle: bool
    features: tuple[str, ...]
    weight: str | None = None


def _package_file(package: str, filename: str) -> str:
    path = importlib.resources.files(package) / "files" / filename
    if not path.is_file():
        raise FileNotFoundError(f"font file {filename!r} not found in package {package!r} ({path})")
    return str(path)


def _discover_typefaces() -> dict[str, Typeface]:
    garamond = "fontpkg_eb_garamond"
    cardo = "fontpkg_cardo"
    cormorant = "fontpkg_cormorant_garamond"
    crimson = "fontpkg_crimson_text"
    return {
        "EB Garamond": Typeface(
            "EB Garamond", _package_file(garamond, "EBGaramond[wght].ttf"),
            _package_file(garamond, "EBGaramond-Italic[wght].ttf"), True, ("onum",), "Regular"),
        "Cardo": Typeface(
            "Cardo", _package_file(cardo, "Cardo-Regular.ttf"), _package_file(cardo, "Cardo-Italic.ttf"),
            True, ("onum",)),
        "Cormorant Garamond": Typeface(
            "Cormorant Garamond", _package_file(cormorant, "CormorantGaramond[wght].ttf"),
            _package_file(cormorant, "CormorantGaramond-Italic[wght].ttf"), True, ("onum",), "Medium"),
        "Crimson Text": Typeface(
            "Crimson Text", _package_file(crimson, "CrimsonText-Regular.ttf"),
            _package_file(crimson, "CrimsonText-Italic.ttf"), False, ()),
    }


def _discover_training_typefaces() -> dict[str, Typeface]:
    """More book faces with old-style or lining figures, used only to train the digit detector.

    The demo corpus keeps its four typefaces; these widen what the detector sees, so that it learns digits
    rather than four founts (real editions were printed in hundreds).
    """
    def face(name, package, roman, italic, oldstyle, features=(), weight="Regular"):
        return Typeface(name, _package_file(package, roman), _package_file(package, italic), oldstyle, features, weight)

    return {
        "Vollkorn": face("Vollkorn", "fontpkg_vollkorn", "Vollkorn[wght].ttf", "Vollkorn-Italic[wght].ttf", True),
        "Crimson Pro": face("Crimson Pro", "fontpkg_crimson_pro", "CrimsonPro[wght].ttf",
                            "CrimsonPro-Italic[wght].ttf", True, ("onum",)),
        "Spectral": face("Spectral", "fontpkg_spectral", "Spectral-Regular.ttf", "Spectral-Italic.ttf", True,
                         ("onum",), None),
        "Libre Baskerville": face("Libre Baskerville", "fontpkg_libre_baskerville", "LibreBaskerville[wght].ttf",
                                  "LibreBaskerville-Italic[wght].ttf", False),
        "Cormorant": face("Cormorant", "fontpkg_cormorant", "Cormorant[wght].ttf", "Cormorant-Italic[wght].ttf",
                          True, (), "Medium"),
        "Literata": face("Literata", "fontpkg_literata", "Literata[opsz,wght].ttf", "Literata-Italic[opsz,wght].ttf",
                         True, ("onum",)),
        "Newsreader": face("Newsreader", "fontpkg_newsreader", "Newsreader[opsz,wght].ttf",
                           "Newsreader-Italic[opsz,wght].ttf", False),
    }


#: name -> :class:`Typeface` (``.path`` is the font file, ``.oldstyle`` whether it has old-style figures).
TYPEFACES: dict[str, Typeface] = _discover_typefaces()
#: Typefaces only the detector's training print uses (the demo corpus is set in :data:`TYPEFACES`).
TRAINING_TYPEFACES: dict[str, Typeface] = _discover_training_typefaces()
_ALL_TYPEFACES = {**TYPEFACES, **TRAINING_TYPEFACES}


def resolve_typefaces(names=None) -> list[str]:
    """Check a selection of typeface names and return it as a sorted list.

    Parameters
    ----------
    names : iterable of str or None
        Names from :data:`TYPEFACES` or :data:`TRAINING_TYPEFACES`; ``None`` means all of :data:`TYPEFACES`.

    Raises
    ------
    ValueError
        If a name is unknown or the selection is empty.
    """
    if names is None:
        return sorted(TYPEFACES)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in _ALL_TYPEFACES]
    if unknown:
        raise ValueError(f"fonts: unknown typeface(s) {unknown}; available: {sorted(_ALL_TYPEFACES)}")
    if not names:
        raise ValueError(f"fonts: empty selection; available: {sorted(_ALL_TYPEFACES)}")
    return sorted(set(names))


@lru_cache(maxsize=256)
def load_font(name: str, size: int, italic: bool = False) -> ImageFont.FreeTypeFont:
    """Load typeface ``name`` at ``size`` pixels (cached)."""
    face = _ALL_TYPEFACES[name]
    font = ImageFont.truetype(face.italic_path if italic else face.path, int(size),
                              layout_engine=ImageFont.Layout.RAQM)
    if face.weight is not None:
        try:
            font.set_variation_by_name(face.weight)
        except (OSError, ValueError):  # an italic file may lack the named instance: keep its default
            pass
    return font


@lru_cache(maxsize=16)
def _has_glyph(path: str, char: str) -> bool:
    try:
        from fontTools.ttLib import TTFont
    except ImportError:  # fontTools comes with matplotlib; without it, be conservative
        return False
    return ord(char) in TTFont(path, lazy=True).getBestCmap()


def has_long_s(name: str) -> bool:
    """Whether typeface ``name`` has the long s (ſ)."""
    return _has_glyph(_ALL_TYPEFACES[name].path, "ſ")


def long_s(text: str) -> str:
    """Set medial and initial s as long s (ſ), as early printers did; final s stays round."""
    chars = list(text)
    for i, ch in enumerate(chars):
        nxt = chars[i + 1] if i + 1 < len(chars) else " "
        if ch == "s" and nxt.isalpha() and nxt not in "bkf":
            chars[i] = "ſ"
    return "".join(chars)


@lru_cache(maxsize=65536)
def _run_length(name: str, size: int, italic: bool, run: str) -> float:
    return load_font(name, size, italic).getlength(run, features=list(_ALL_TYPEFACES[name].features))


@lru_cache(maxsize=16384)
def _run_mask(name: str, size: int, italic: bool, run: str) -> tuple[Image.Image | None, int, int,
                                                                     tuple[int, int, int, int] | None]:
    """Rendered ink of ``run`` (cached): mask, its offset from the left-baseline origin, and its ink box.

    The ink box ignores the faint anti-aliasing fringe a reader (or a detector) would not see as ink.
    """
    font = load_font(name, size, italic)
    pad = 2 * size
    width = int(_run_length(name, size, italic, run)) + 2 * pad
    probe = Image.new("L", (width, 4 * size), 0)
    ImageDraw.Draw(probe).text((pad, pad), run, font=font, fill=255, anchor="ls",
                               features=list(_ALL_TYPEFACES[name].features))
    box = probe.getbbox()
    if box is None:
        return None, 0, 0, None
    ink = probe.point(lambda v: 255 if v > 60 else 0).getbbox()
    ink_box = None if ink is None else (ink[0] - pad, ink[1] - pad, ink[2] - pad, ink[3] - pad)
    return probe.crop(box), box[0] - pad, box[1] - pad, ink_box


class Pen:
    """Draws text on a grey page and records the ink box of every printed digit.

    Parameters
    ----------
    image : PIL.Image.Image
        Page in mode ``"L"`` (paper 255, ink 0).
    typeface : str
        Name from :data:`TYPEFACES`.
    use_long_s : bool
        Replace medial s by ſ where the font has it.

    Attributes
    ----------
    digit_boxes : list of (str, int, int, int, int)
        ``(digit, x0, y0, x1, y1)`` in page pixels, ``x1``/``y1`` exclusive.
    """

    def __init__(self, image: Image.Image, typeface: str, use_long_s: bool = False):
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.typeface = typeface
        self.features = list(_ALL_TYPEFACES[typeface].features)
        self.use_long_s = use_long_s and has_long_s(typeface)
        self.digit_boxes: list[tuple[str, int, int, int, int]] = []

    def font(self, size: int, italic: bool = False) -> ImageFont.FreeTypeFont:
        return load_font(self.typeface, size, italic)

    def _runs(self, text: str):
        """Split ``text`` into single digits and runs of other characters."""
        run = ""
        for ch in text:
            if ch in DIGITS:
                if run:
                    yield run
                    run = ""
                yield ch
            else:
                run += ch
        if run:
            yield run

    def prepare(self, text: str) -> str:
        return long_s(text) if self.use_long_s else text

    def width(self, text: str, size: int, italic: bool = False) -> float:
        """Advance width of ``text`` as :meth:`text` would print it."""
        return sum(_run_length(self.typeface, size, italic, r) for r in self._runs(self.prepare(text)))

    def text(self, x: float, baseline: float, text: str, size: int, italic: bool = False) -> float:
        """Print ``text`` with its left end at ``x`` on ``baseline``; return the advance width.

        Runs are stamped from cached renderings at whole-pixel origins, so a digit's recorded ink box is
        exactly where its ink lands.
        """
        start = x
        for run in self._runs(self.prepare(text)):
            if run.strip():
                mask, dx, dy, ink = _run_mask(self.typeface, size, italic, run)
                ox, oy = int(round(x)), int(round(baseline))
                if mask is not None:
                    self.image.paste(0, (ox + dx, oy + dy, ox + dx + mask.width, oy + dy + mask.height), mask)
                    if run in DIGITS and ink is not None:
                        self.digit_boxes.append((run, ox + ink[0], oy + ink[1], ox + ink[2], oy + ink[3]))
            x += _run_length(self.typeface, size, italic, run)
        return x - start

    def centred(self, cx: float, baseline: float, text: str, size: int, italic: bool = False) -> float:
        """Print ``text`` centred on ``cx``; return its width."""
        w = self.width(text, size, italic)
        self.text(cx - w / 2, baseline, text, size, italic)
        return w

    def right(self, x1: float, baseline: float, text: str, size: int, italic: bool = False) -> float:
        """Print ``text`` ending at ``x1``; return its width."""
        w = self.width(text, size, italic)
        self.text(x1 - w, baseline, text, size, italic)
        return w
