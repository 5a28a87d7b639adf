"""A BiLRP explanation as a W3C Web Annotation (https://www.w3.org/TR/annotation-model/), so it can be cited.

The annotation *links* regions of the second scan (bodies) to regions of the first (targets): one
``SpecificResource`` with a media-fragment ``FragmentSelector`` (``xywh=x,y,w,h`` in pixels of the original scan)
per patch pair, in rank order, plus a ``TextualBody`` describing the similarity in words. Which body region goes
with which target region, and the numbers behind it (model key, γ schedule, similarity, relevance of each pair),
are kept in an ``explanation`` extension property typed ``@json`` in an extra JSON-LD context, so standard
annotation tools still read the annotation and nothing is lost for a reader who wants the evidence.
"""

from __future__ import annotations

import datetime
import math
import uuid
from pathlib import Path
from urllib.parse import urlparse

ANNOTATION_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
MEDIA_FRAGMENTS = "http://www.w3.org/TR/media-frags/"
# Extension terms; the Web Annotation context must be the last one listed (model, Sec. 3.1).
EXTENSION_CONTEXT = {"explanation": {"@id": "urn:sphaera-explorer:bilrp-explanation", "@type": "@json"}}
GENERATOR = {"type": "Software", "name": "Sphaera similarity explorer (BiLRP, Eberle et al., TPAMI 2022)"}


def _source_id(source) -> str:
    """An IRI for a scan: URLs stay as they are, absolute file paths become file:// URIs."""
    text = str(source)
    if urlparse(text).scheme in ("http", "https", "file", "urn"):
        return text
    path = Path(text)
    return path.as_uri() if path.is_absolute() else text


def _resource(source, size, label=None) -> dict:
    resource = {"id": _source_id(source), "type": "Image"}
    if size is not None:
        resource["width"], resource["height"] = int(size[0]), int(size[1])
    if label:
        resource["label"] = str(label)
    return resource


def _xywh(x0, y0, x1, y1) -> str:
    return f"xywh={int(x0)},{int(y0)},{int(x1) - int(x0)},{int(y1) - int(y0)}"


def _boxes(row: dict, side: int) -> tuple[str, tuple]:
    """The box of one side of a top-pairs row, in original pixels when the table has them."""
    prefix = f"orig{side}" if f"orig{side}_x0" in row and row[f"orig{side}_x0"] is not None else f"img{side}"
    return prefix, tuple(row[f"{prefix}_{c}"] for c in ("x0", "y0", "x1", "y1"))


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _region(region_id, source, size, label, box) -> dict:
    """A region of a scan: a ``SpecificResource`` with a media-fragment selector."""
    return {"id": region_id, "type": "SpecificResource", "source": _resource(source, size, label),
            "selector": {"type": "FragmentSelector", "conformsTo": MEDIA_FRAGMENTS, "value": _xywh(*box)}}


def _linked_regions(rows, annotation_id, sources, sizes, labels):
    """Per patch pair: a target region of the first scan, a body region of the second, and the link between them.

    Returns (targets, bodies, links, units), ``units`` the pixel units the boxes were given in.
    """
    targets, bodies, links, units = [], [], [], set()
    for number, row in enumerate(rows, start=1):
        unit1, box1 = _boxes(row, 1)
        unit2, box2 = _boxes(row, 2)
        units.update({unit1[:4], unit2[:4]})
        target_id, body_id = f"{annotation_id}#pair{number}-target", f"{annotation_id}#pair{number}-body"
        targets.append(_region(target_id, sources[0], sizes[0], labels[0], box1))
        bodies.append(_region(body_id, sources[1], sizes[1], labels[1], box2))
        links.append({"rank": int(row.get("rank", number)), "relevance": _number(row["relevance"]),
                      "share": _number(row["share"]) if "share" in row else None, "target": target_id,
                      "body": body_id})
    return targets, bodies, links, units


def web_annotation(source1, source2, pairs, model_key, gamma, score, total=None, pool=None, sizes=None,
                   labels=None, annotation_id=None, created=None) -> dict:
    """A W3C Web Annotation (motivation ``linking``) of the evidence for a similarity.

    Parameters
    ----------
    source1, source2 : str or path
        Where the two scans come from (IIIF image URL, web URL or file path; paths become file:// URIs).
    pairs : pandas.DataFrame or list of dict
        Rows of :func:`bilrp_core.render.top_pairs`; boxes are taken in original pixels (``orig1_x0`` …) when
        present, else in model-input pixels (then the annotation says so).
    model_key : str
        The similarity model (names all its parameters).
    gamma : dict or float or None
        The γ schedule used ({layer index: γ}).
    score : float
        The similarity y(x, x') the explanation decomposes.
    total : float, optional
        Σ of the pair matrix (the explained similarity).
    pool : int, optional
        Patch size in model-input pixels.
    sizes : ((w1, h1), (w2, h2)), optional
        Sizes of the original scans (recorded on the image resources).
    labels : (str, str), optional
        Human-readable names of the two scans (e.g. "Venice 1499, p. 12").
    annotation_id : str, optional
        IRI of the annotation (default: a fresh ``urn:uuid:``).
    created : str, optional
        ISO 8601 creation time (default: now, UTC).

    Returns
    -------
    dict
        JSON-serialisable JSON-LD.
    """
    rows = pairs.to_dict("records") if hasattr(pairs, "to_dict") else [dict(r) for r in pairs]
    if not rows:
        raise ValueError("pairs is empty: an annotation needs at least one patch pair")
    annotation_id = annotation_id or f"urn:uuid:{uuid.uuid4()}"
    sizes = sizes or (None, None)
    labels = labels or (None, None)
    targets, bodies, links, units = _linked_regions(rows, annotation_id, (source1, source2), sizes, labels)
    pixels = "original scan pixels" if units == {"orig"} else "model-input pixels"
    schedule = {str(k): float(v) for k, v in gamma.items()} if isinstance(gamma, dict) else gamma
    description = (f"BiLRP explanation of the similarity y = {score:.6g} between '{labels[0] or _source_id(source1)}'"
                   f" and '{labels[1] or _source_id(source2)}' under model {model_key}: the {len(rows)} most "
                   f"relevant patch pairs (regions in {pixels}).")
    return {
        "@context": [EXTENSION_CONTEXT, ANNOTATION_CONTEXT],
        "id": annotation_id,
        "type": "Annotation",
        "motivation": "linking",
        "created": created or datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "generator": GENERATOR,
        "body": [{"type": "TextualBody", "purpose": "describing", "format": "text/plain", "language": "en",
                  "value": description}, *bodies],
        "target": targets,
        "explanation": {
            "method": "BiLRP (Eberle et al., IEEE TPAMI 2022)", "model_key": model_key, "gamma": schedule,
            "score": _number(score), "total": None if total is None else _number(total),
            "pool": pool, "pixels": pixels, "pairs": links,
        },
    }
