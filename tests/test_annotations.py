"""W3C Web Annotation exports of verdicts and explanations, checked against the Web Annotation Data Model.

:func:`check_document` is written from the model (https://www.w3.org/TR/annotation-model/, Sections 3–5) and
the media-fragments spacial syntax, offline: the JSON-LD context must end with the Web Annotation context;
collections, pages and annotations have their required ``id``/``type`` and properties; motivations, purposes
and selector types come from the model's lists; every IRI is absolute and none is a local file.
"""

import datetime
import hashlib
import json
import re
from urllib.parse import urlparse

import numpy as np
import pytest
from tiny_corpus import make_corpus

from bilrp_core.annotation import ScanRef, pair_annotations, scan_target
from bilrp_core.render import top_pairs
from corpus_index import verdicts
from corpus_index.annotations import (
    each_annotation,
    explanation_annotations,
    read_verdict_annotations,
    scan_ref,
    verdict_annotations,
)
from corpus_index.ingest.iiif import ingest_iiif
from tests.test_iiif import V2, FakeServer

ANNO_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
MOTIVATIONS = {"assessing", "bookmarking", "classifying", "commenting", "describing", "editing", "highlighting",
               "identifying", "linking", "moderating", "questioning", "replying", "tagging"}
SELECTORS = {"FragmentSelector", "CssSelector", "XPathSelector", "TextQuoteSelector", "TextPositionSelector",
             "DataPositionSelector", "SvgSelector", "RangeSelector"}
AGENTS = {"Person", "Organization", "Software"}
XYWH = re.compile(r"xywh=(pixel:|percent:)?\d+(\.\d+)?,\d+(\.\d+)?,\d+(\.\d+)?,\d+(\.\d+)?")


def check_iri(value, where):
    assert isinstance(value, str) and urlparse(value).scheme, f"{where}: {value!r} is not an absolute IRI"
    assert urlparse(value).scheme != "file", f"{where}: local file IRI {value!r}"


def check_time(value, where):
    assert datetime.datetime.fromisoformat(value).tzinfo is not None, f"{where}: {value!r} is not xsd:dateTime"


def check_resource(resource, where):
    """A body or target: an IRI, a TextualBody, a SpecificResource or an external resource with id and type."""
    if isinstance(resource, str):
        check_iri(resource, where)
        return
    kind = resource.get("type")
    if kind == "TextualBody":
        assert isinstance(resource.get("value"), str), f"{where}: TextualBody without value"
        assert resource.get("purpose", "describing") in MOTIVATIONS, f"{where}: purpose {resource.get('purpose')}"
        return
    if kind == "SpecificResource":
        check_resource(resource["source"], f"{where}.source")
        for selector in resource.get("selector") if isinstance(resource.get("selector"), list) \
                else [resource["selector"]]:
            assert selector["type"] in SELECTORS, f"{where}: selector type {selector['type']}"
            if selector["type"] == "FragmentSelector":
                assert selector.get("conformsTo") == "http://www.w3.org/TR/media-frags/"
                assert XYWH.fullmatch(selector["value"]), f"{where}: fragment {selector['value']!r}"
        return
    check_iri(resource.get("id"), f"{where}.id")
    assert isinstance(kind, str) and kind, f"{where}: resource without type"


def check_annotation(annotation, where):
    check_iri(annotation.get("id"), f"{where}.id")
    assert annotation.get("type") == "Annotation", where
    motivations = annotation.get("motivation")
    assert motivations and set(np.atleast_1d(motivations)) <= MOTIVATIONS, f"{where}: motivation {motivations}"
    assert "target" in annotation, f"{where}: an annotation needs a target"
    for name in ("body", "target"):
        values = annotation.get(name, [])
        for number, value in enumerate(values if isinstance(values, list) else [values]):
            check_resource(value, f"{where}.{name}[{number}]")
    for name in ("creator", "generator"):
        if name in annotation:
            assert annotation[name]["type"] in AGENTS and annotation[name].get("name"), f"{where}.{name}"
    if "created" in annotation:
        check_time(annotation["created"], f"{where}.created")


def check_document(document):
    """Raise AssertionError unless ``document`` is a valid Web Annotation collection; returns its annotations."""
    context = document["@context"]
    assert (context == ANNO_CONTEXT) or (isinstance(context, list) and context[-1] == ANNO_CONTEXT)
    assert json.loads(json.dumps(document)) == document  # plain JSON
    check_iri(document["id"], "collection.id")
    assert document["type"] == "AnnotationCollection" and document.get("label")
    page = document["first"]
    assert page["type"] == "AnnotationPage" and isinstance(page["startIndex"], int)
    check_iri(page["id"], "page.id")
    items = page["items"]
    assert document["total"] == len(items)
    for number, annotation in enumerate(items):
        assert "@context" not in annotation  # embedded annotations take the collection's context
        check_annotation(annotation, f"items[{number}]")
    assert len({a["id"] for a in items}) == len(items), "annotation ids must be unique"
    return items


def test_the_checker_catches_what_the_model_forbids():
    good = {"@context": ANNO_CONTEXT, "id": "urn:x:c", "type": "AnnotationCollection", "label": "x", "total": 1,
            "first": {"id": "urn:x:p", "type": "AnnotationPage", "startIndex": 0,
                      "items": [{"id": "urn:x:a", "type": "Annotation", "motivation": "linking",
                                 "target": ["https://example.org/a", "https://example.org/b"]}]}}
    check_document(good)
    for path, bad in [(("motivation",), "liking"), (("target",), ["file:///tmp/a.png"]), (("id",), "a1"),
                      (("target",), [{"type": "SpecificResource", "source": "urn:x:s",
                                      "selector": {"type": "FragmentSelector", "value": "xywh=1,2",
                                                   "conformsTo": "http://www.w3.org/TR/media-frags/"}}])]:
        broken = json.loads(json.dumps(good))
        broken["first"]["items"][0][path[0]] = bad
        with pytest.raises(AssertionError):
            check_document(broken)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.delenv("SPHAERA_BASE_URI", raising=False)
    corpus = make_corpus(tmp_path)
    yield corpus
    corpus.close()


def test_verdict_annotations_use_item_uris_for_local_scans(corpus, monkeypatch):
    verdicts.record(corpus.store, 3, 1, "same", "Ada", note="same woodcut", model_key="tiny-test", gamma=0.25,
                    pool=4, score=0.5)
    verdicts.record(corpus.store, 1, 2, "different", "Bea", wrong_reason=True, regions=[2])
    document = verdict_annotations(corpus.store)
    items = check_document(document)
    assert len(items) == 2
    first = items[0]
    assert first["motivation"] == "linking" and first["creator"] == {"type": "Person", "name": "Ada"}
    hashes = [corpus.item(i)["hash"] for i in (1, 3)]
    assert [t["id"] for t in first["target"]] == [f"urn:sphaera:corpus/item/{h}" for h in hashes]
    assert first["body"][0] == {"type": "TextualBody", "purpose": "classifying", "format": "text/plain",
                                "value": "same"}
    assert first["body"][-1]["value"] == "same woodcut" and first["verdict"]["score"] == 0.5
    assert "file:" not in json.dumps(document)
    monkeypatch.setenv("SPHAERA_BASE_URI", "https://example.org/sphaera/")
    again = verdict_annotations(corpus.store)
    assert again["first"]["items"][0]["target"][0]["id"] == f"https://example.org/sphaera/item/{hashes[0]}"
    assert again["first"]["items"][0]["id"] == first["id"]  # verdict ids do not depend on the base
    monkeypatch.setenv("SPHAERA_BASE_URI", "file:///tmp/corpus")
    with pytest.raises(ValueError, match="SPHAERA_BASE_URI"):
        verdict_annotations(corpus.store)


def test_verdicts_on_replaced_scans_target_the_content_that_was_judged(corpus):
    judged = corpus.item(2)["hash"]
    verdicts.record(corpus.store, 1, 2, "same", "Ada")
    with corpus.store.transaction() as conn:  # item 2's scan replaced after the verdict
        conn.execute("UPDATE items SET hash = 'f' || substr(hash, 2) WHERE id = 2")
    target = check_document(verdict_annotations(corpus.store))[0]["target"][1]
    assert target["id"] == f"urn:sphaera:corpus/item/{judged}"


def test_verdicts_read_back_equal(corpus, tmp_path):
    verdicts.record(corpus.store, 3, 1, "partial", "Ada", wrong_reason=True, regions=[1, 4], note="rules",
                    model_key="tiny-test", gamma={2: 0.5}, pool=8, score=1.25)
    verdicts.record(corpus.store, 5, 6, "related", "Bea")
    path = tmp_path / "verdicts.jsonld"
    path.write_text(json.dumps(verdict_annotations(corpus.store)))
    back = read_verdict_annotations(path)
    stored = verdicts.current(corpus.store)
    assert back["label"].tolist() == stored["label"].tolist()
    assert back["regions"].tolist() == [[1, 4], []] and back["gamma"].tolist() == [{"2": 0.5}, None]
    for name in ("item1", "item2", "hash1", "hash2", "reviewer", "created_at", "note", "params_hash"):
        assert back[name].tolist() == stored[name].tolist(), name


@pytest.fixture
def iiif_store(tmp_path):
    from corpus_index.storage.store import Store

    store = Store(tmp_path / "iiif-root")
    report = ingest_iiif(store, V2, fetch=FakeServer())
    assert len(report.added) == 4
    yield store
    store.close()


def test_iiif_items_target_their_canvas_with_the_region_fragment(iiif_store):
    frame = iiif_store.query_items()
    page = iiif_store.get_item(int(frame.loc[frame["label"] == "fol. 1r", "id"].iloc[0]))
    region = iiif_store.get_item(int(frame.loc[frame["label"] == "Tabula climatum", "id"].iloc[0]))
    ref = scan_ref(iiif_store, region)
    assert ref.source == page["extra"]["canvas"] and ref.kind == "Canvas" and ref.size == (80, 60)
    target = scan_target(ref)
    assert target["source"]["partOf"]["id"] == page["extra"]["manifest"]
    assert target["selector"]["value"] == region["extra"]["canvas_fragment"]  # canvas coordinates, as given
    # A box of an explanation (pixels of the 80x60 page image) becomes percent of the canvas.
    assert scan_target(ref, (8, 6, 48, 36))["selector"]["value"] == "xywh=percent:10,10,50,50"
    verdicts.record(iiif_store, page["id"], region["id"], "partial", "Ada")
    items = check_document(verdict_annotations(iiif_store))
    assert items[0]["target"][0] == {"id": page["extra"]["canvas"], "type": "Canvas",
                                     "partOf": {"id": page["extra"]["manifest"], "type": "Manifest"},
                                     "label": scan_ref(iiif_store, page).label}


def test_http_sources_are_targets_and_file_sources_are_refused():
    assert scan_target(ScanRef("https://example.org/p.jpg", fragment="xywh=1,2,3,4"))["source"]["id"] == \
        "https://example.org/p.jpg"
    for bad in ("/tmp/p.png", "file:///tmp/p.png"):
        with pytest.raises(ValueError, match="not a citable IRI"):
            scan_target(ScanRef(bad))


def test_explanation_export_has_one_annotation_per_region_pair(corpus):
    pair = np.zeros((2, 2, 2, 2))
    pair[1, 0, 0, 1] = 3.0
    pair[0, 1, 1, 1] = -1.0
    table = top_pairs(pair, pool=8, n=2, original_sizes=((44, 36), (44, 36)))
    items = [corpus.item(1), corpus.item(2)]
    document = explanation_annotations(corpus.store, items, table, "tiny-test", {0: 0.25}, score=2.0, total=2.0,
                                       pool=8)
    annotations = check_document(document)
    assert len(annotations) == 2
    first = annotations[0]
    assert len(first["target"]) == 2 and first["motivation"] == "linking"
    assert first["target"][0]["source"]["id"] == f"urn:sphaera:corpus/item/{items[0]['hash']}"
    x0, y0, x1, y1 = (int(table[f"orig1_{c}"].iloc[0]) for c in ("x0", "y0", "x1", "y1"))
    assert first["target"][0]["selector"]["value"] == f"xywh={x0},{y0},{x1 - x0},{y1 - y0}"
    assert first["explanation"]["relevance"] == 3.0 and annotations[1]["explanation"]["rank"] == 2
    upload = explanation_annotations(corpus.store, [None, items[1]], table, "tiny-test", None, score=2.0,
                                     upload=b"scan bytes")
    digest = hashlib.sha256(b"scan bytes").hexdigest()
    assert check_document(upload)[0]["target"][0]["source"]["id"] == f"urn:sphaera:corpus/item/{digest}"
    marked = each_annotation(document, lambda one: dict(one, note="marked"))
    assert [a["note"] for a in check_document(marked)] == ["marked", "marked"] and "note" not in annotations[0]
    with pytest.raises(ValueError, match="empty"):
        pair_annotations(ScanRef("urn:x:a"), ScanRef("urn:x:b"), table.iloc[:0], "m", None, 1.0)
