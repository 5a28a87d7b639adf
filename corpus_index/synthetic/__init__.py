"""The embedded early-modern demo corpus: astronomical tables and woodcut diagrams in several editions.

``python -m corpus_index.synthetic --out DIR --books N --seed S`` writes ``DIR/images/*.png``,
``DIR/metadata.csv`` and ``DIR/glyphs.csv`` (the page-pixel box of every printed digit).
"""

from .corpus import GLYPH_COLUMNS, METADATA_COLUMNS, generate_corpus
from .degrade import Defects, print_and_scan
from .diagrams import DiagramSpec, illustration_groups, render_diagram
from .fonts import TYPEFACES, Typeface
from .pages import illustration_page, table_page
from .tables import (
    TableSpec,
    clime_latitude,
    sexagesimal,
    solar_declination,
    sun_longitude,
    table_groups,
)
from .training import digit_training_pages
from .typesetting import TableStyle, render_table_page

__all__ = [
    "GLYPH_COLUMNS", "METADATA_COLUMNS", "TYPEFACES", "Defects", "DiagramSpec", "TableSpec", "TableStyle",
    "Typeface", "clime_latitude", "digit_training_pages", "generate_corpus", "illustration_groups",
    "illustration_page", "print_and_scan", "render_diagram", "render_table_page", "sexagesimal",
    "solar_declination", "sun_longitude", "table_groups", "table_page",
]
