"""BiLRP explanations and historians' verdicts as W3C Web Annotations (https://www.w3.org/TR/annotation-model/).

Where a scan is, as an annotation target, is decided in one place: a :class:`ScanRef` names the scan (a IIIF
canvas, a web address, or a stable item URI — never a local file path) and :func:`scan_target` turns it, with an
optional box, into a target: the IRI itself, or a ``SpecificResource`` with a media-fragment ``FragmentSelector``
(``xywh=x,y,w,h`` in pixels of the scan, or ``xywh=percent:…`` on a canvas whose coordinate space is not known).
:func:`pair_annotations` exports an explanation as an ``AnnotationCollection`` with one ``linking`` annotation per
patch pair, each linking exactly its two regions; the verdict export (:mod:`corpus_index.annotations`) builds its
annotations from the same targets and the same collection (:func:`collection`).

The numbers behind each link (model key, γ schedule, similarity, relevance) travel in an extension property
typed ``@json`` in an extra JSON-LD context, so standard annotation tools still read the annotations and nothing
is lost for a reader who wants the evidence.

"""

from __future__ import annotations

import datetime
import math
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

ANNOTATION_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
MEDIA_FRAGMENTS = "http://www.w3.org/TR/media-frags/"
# Extension terms; the Web Annotation context must be the last one listed (model, Sec. 3.1).
EXTENSION_CONTEXT = {"explanation": {"@id": "urn:sphaera-explorer:bilrp-explanation", "@type": "@json"},
                     "verdict": {"@id": "urn:sphaera-explorer:verdict", "@type": "@json"}}
GENERATOR = {"type": "Software", "name": "Sphaera similarity explorer (BiLRP, Eberle et al., TPAMI 2022)"}


def _xywh(x0, y0, x1, y1) -> str:
    return f"xywh={int(x0)},{int(y0)},{int(x1) - int(x0)},{int(y1) - int(y0)}"


def _boxes(row: dict, side: int) -> tuple[str, tuple]:
    """The box of one side of a top-pairs row, in original pixels when the table has them."""
    prefix = f"orig{side}" if f"orig{side}_x0" in row and row[f"orig{side}_x0"] is not None else f"img{side}"
    return prefix, tuple(row[f"{prefix}_{c}"] for c in ("x0", "y0", "x1", "y1"))


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ScanRef:
    """Where a scan is, for annotation targets.

    Attributes
    ----------
    source : str
        An absolute IRI: a IIIF canvas id, the scan's http(s) address, or a stable item URI
        (``<base>/item/<content hash>``). Never a local path: :func:`scan_target` refuses ``file:`` IRIs.
    kind : str
        ``"Canvas"`` for a IIIF canvas, ``"Image"`` otherwise.
    fragment : str, optional
        The item's own part of the source (``xywh=…`` of a region), for a target naming the whole item.
    size : (int, int), optional
        Pixel size of the image file that explanation boxes are given in (needed when ``percent``).
    percent : bool
        Give boxes as ``xywh=percent:…`` of ``size``: a canvas's coordinate space is not the fetched image's.
    part_of : str, optional
        The IIIF manifest the canvas belongs to.
    label : str, optional
        A human-readable name ("Venice 1499, p. 12").
    """

    source: str
    kind: str = "Image"
    fragment: str | None = None
    size: tuple[int, int] | None = None
    percent: bool = False
    part_of: str | None = None
    label: str | None = None


def _percent(value: float, whole: int) -> str:
    return f"{100.0 * float(value) / float(whole):.4f}".rstrip("0").rstrip(".")


def _selector(value: str) -> dict:
    return {"type": "FragmentSelector", "conformsTo": MEDIA_FRAGMENTS, "value": value}


def scan_target(ref: ScanRef, box=None) -> dict:
    """The annotation target of a scan (its ``fragment``, if any) or of a box (x0, y0, x1, y1) on it.

    Raises ValueError for a ``file:`` or relative source (not citable) and for a percent box without a size.
    """
    scheme = urlparse(ref.source).scheme.lower()
    if not scheme or scheme == "file":
        raise ValueError(f"annotation target {ref.source!r} is not a citable IRI (a canvas, web address or item "
                         "URI; never a local file)")
    source = {"id": ref.source, "type": ref.kind}
    if ref.part_of:
        source["partOf"] = {"id": ref.part_of, "type": "Manifest"}
    if ref.label:
        source["label"] = str(ref.label)
    if box is None:
        value = ref.fragment
    elif ref.percent:
        if not ref.size:
            raise ValueError(f"a percent box on {ref.source} needs the image size")
        (w, h), (x0, y0, x1, y1) = ref.size, box
        value = (f"xywh=percent:{_percent(x0, w)},{_percent(y0, h)},{_percent(x1 - x0, w)},"
                 f"{_percent(y1 - y0, h)}")
    else:
        value = _xywh(*box)
    if value is None:
        return source
    return {"type": "SpecificResource", "source": source, "selector": _selector(value)}


def collection(annotations: list[dict], collection_id: str, label: str, created: str | None = None) -> dict:
    """An ``AnnotationCollection`` holding ``annotations`` in one ``AnnotationPage`` (model, Sec. 5)."""
    page = {"id": f"{collection_id}#page1", "type": "AnnotationPage", "startIndex": 0, "items": annotations}
    return {"@context": [EXTENSION_CONTEXT, ANNOTATION_CONTEXT], "id": collection_id,
            "type": "AnnotationCollection", "label": label, "total": len(annotations),
            "created": created or _now(), "generator": GENERATOR, "first": page, "last": page["id"]}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def pair_annotations(ref1: ScanRef, ref2: ScanRef, pairs, model_key, gamma, score, total=None, pool=None,
                     collection_id=None, created=None) -> dict:
    """An explanation as an ``AnnotationCollection``: one ``linking`` annotation per patch pair.

    Parameters
    ----------
    ref1, ref2 : ScanRef
        The two scans (for a region item: its page, since the boxes are on the page).
    pairs : pandas.DataFrame or list of dict
        Rows of :func:`bilrp_core.render.top_pairs`; boxes are taken in original pixels (``orig1_x0`` …) when
        present, else in model-input pixels (then the annotations say so).
    model_key, gamma, score, total, pool
        What the explanation was computed with (model key, γ schedule, patch size) and what it decomposes.
    collection_id : str, optional
        IRI of the collection (default: a fresh ``urn:uuid:``); annotation *n* is ``<collection_id>/pair<n>``.
    created : str, optional
        ISO 8601 time (default: now, UTC).
    """
    rows = pairs.to_dict("records") if hasattr(pairs, "to_dict") else [dict(r) for r in pairs]
    if not rows:
        raise ValueError("pairs is empty: an explanation export needs at least one patch pair")
    collection_id = collection_id or f"urn:uuid:{uuid.uuid4()}"
    created = created or _now()
    schedule = {str(k): float(v) for k, v in gamma.items()} if isinstance(gamma, dict) else gamma
    names = [ref.label or ref.source for ref in (ref1, ref2)]
    annotations = []
    for number, row in enumerate(rows, start=1):
        (unit1, box1), (unit2, box2) = _boxes(row, 1), _boxes(row, 2)
        pixels = "original scan pixels" if {unit1[:4], unit2[:4]} == {"orig"} else "model-input pixels"
        rank = int(row.get("rank", number))
        relevance = _number(row["relevance"])
        text = (f"Patch pair {rank} of the BiLRP explanation of the similarity y = {float(score):.6g} between "
                f"'{names[0]}' and '{names[1]}' under model {model_key}: relevance {float(row['relevance']):.6g}.")
        annotations.append({
            "id": f"{collection_id}/pair{number}", "type": "Annotation", "motivation": "linking",
            "created": created, "generator": GENERATOR,
            "body": [{"type": "TextualBody", "purpose": "describing", "format": "text/plain", "language": "en",
                      "value": text}],
            "target": [scan_target(ref1, box1), scan_target(ref2, box2)],
            "explanation": {"method": "BiLRP (Eberle et al., IEEE TPAMI 2022)", "model_key": model_key,
                            "gamma": schedule, "score": _number(score), "rank": rank, "relevance": relevance,
                            "share": _number(row["share"]) if "share" in row else None,
                            "total": None if total is None else _number(total), "pool": pool, "pixels": pixels},
        })
    label = f"BiLRP explanation of '{names[0]}' and '{names[1]}' under {model_key}: {len(rows)} patch pairs"
    return collection(annotations, collection_id, label, created)
