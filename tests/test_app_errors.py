"""Bad links and bad uploads get clear messages in the explorer, never a traceback (issue 14 §4, app part).

A shared link may carry a model key the app does not offer (``-px2048`` would allocate gigabytes), an item id
that can name no item (``-1``, a 23-digit number, ``abc``) or a γ that is nan; an upload on the Neighbours page
may be no image at all. Runs on the small corpus of :func:`tiny_corpus.make_sparse_corpus` (VGG-16 cut at
layer 5, 64 px, h = 8, random weights).
"""

import struct
import zlib
from pathlib import Path

import pytest
from tiny_corpus import explorer_session, make_sparse_corpus

pytestmark = pytest.mark.slow  # Streamlit AppTest runs of whole pages: the full suite, not the fast subset

APP_DIR = Path(__file__).resolve().parent.parent
MODEL = "vgg16-L5-h8-seed0-px64"
HUGE = "vgg16-L17-h100-seed0-px2048"  # malformed: corpus_index.models allows at most 1024 px
LARGE = "vgg16-L17-h100-seed0-px1024"  # a valid key, but not one the controls offer on this corpus
TIMEOUT = 120


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    corpus = make_sparse_corpus(tmp_path_factory.mktemp("errors"))
    corpus.build(MODEL)
    corpus.close()
    return corpus.root


@pytest.fixture
def built(monkeypatch):
    """Model keys built during the test; building the huge model fails the test instead of allocating 7 GB."""
    import corpus_index.models as models

    keys = []
    build = models._build

    def guarded(spec, key):
        keys.append(key)
        assert key not in (HUGE, LARGE), f"the app built {key}"
        return build(spec, key)

    monkeypatch.setattr(models, "_build", guarded)
    return keys


def page(root, monkeypatch, path, **params):
    """An AppTest session on ``root``, switched to the page file ``path`` with these query parameters."""
    at = explorer_session(monkeypatch, root, MODEL, TIMEOUT, **params)
    at.run()
    return at.switch_page(path).run()


def messages(at) -> list[str]:
    return [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]


@pytest.mark.parametrize("key", [HUGE, LARGE])
@pytest.mark.parametrize("path", ["pages/explain.py", "pages/neighbours.py", "pages/compare.py"])
def test_a_model_the_app_does_not_offer_is_refused_before_anything_is_built(root, monkeypatch, built, path, key):
    at = page(root, monkeypatch, path, model=key, pair="1-2", item="1")
    assert not at.exception, [e.value for e in at.exception]
    refusal = [w.value for w in at.warning if key in w.value]
    assert refusal and "not one this explorer offers" in refusal[0], messages(at)
    assert MODEL in refusal[0] and "bigram" in refusal[0] and "layer 5, 10, 17, 24, 31" in refusal[0]
    assert not at.error, [e.value for e in at.error]  # the page goes on with the default model
    assert key not in built
    if "compare" not in path:  # these pages write the model they use back into the URL
        assert key not in str(at.query_params.get("model"))


def test_offered_model_keys():
    from explorer.choices import offered

    known = (MODEL, "bigram")
    assert offered(MODEL, known) and offered("vgg16-L31-h100-seed0-px64-rot", known)
    assert offered("vgg16in-L10-h8-seed0-px64", known) and offered("bigram-sums-aligned-rot", known)
    assert not offered(HUGE, known) and not offered(LARGE, known) and not offered("vgg16-L5-h8-seed3-px64", known)
    assert not offered("vgg16-L5-h4096-seed0-px64", known) and not offered("resnet", known)
    assert offered("vgg16-L17-h100-seed0", ("bigram",))  # no VGG model configured: the controls' default base


@pytest.mark.parametrize("bad", ["-1", "99999999999999999999999", "abc"])
def test_an_id_that_names_no_item_gets_the_no_such_item_message(root, monkeypatch, bad):
    at = page(root, monkeypatch, "pages/neighbours.py", item=bad, model=MODEL)
    assert not at.exception, [e.value for e in at.exception]
    # the words of a whole number the corpus does not hold (tests/test_app.py: "no item with id 99999")
    assert [e.value for e in at.error] == [f"Finding neighbours: no item with id {bad} in the corpus at {root}"]
    if bad.isdigit():  # a pair on Explain and Compare: the same words
        for path in ("pages/explain.py", "pages/compare.py"):
            at = page(root, monkeypatch, path, pair=f"1-{bad}", model=MODEL)
            assert not at.exception, [e.value for e in at.exception]
            assert [e.value for e in at.error] == [f"Reading the pair: no item with id {bad} in the corpus at {root}"]


@pytest.mark.parametrize("gamma", ["nan", "inf", "-1", "2:nan"])
def test_a_gamma_that_is_not_a_finite_number_at_least_zero_is_refused(root, monkeypatch, gamma):
    at = page(root, monkeypatch, "pages/explain.py", pair="1-2", model=MODEL, gamma=gamma)
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    warning = next(w.value for w in at.warning if "γ" in w.value)
    assert f"{gamma!r} in the link is refused: γ must be a finite number ≥ 0" in warning
    assert at.radio(key="ex_gmode").value == "default"  # the page goes on with the model's own schedule


def png_header(width: int, height: int) -> bytes:
    """A valid PNG that claims width × height pixels (only its header is ever read)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, data, words", [
    ("text.png", b"not an image", "not an image"),
    ("empty.png", b"", "empty file"),
    ("bomb.png", png_header(20000, 20000), "image too large: 400,000,000 pixels"),
    ("huge.png", png_header(10000, 10000), "image too large: 10000"),
])
def test_a_bad_upload_on_neighbours_reads_as_on_add_scans(root, monkeypatch, name, data, words):
    add = page(root, monkeypatch, "pages/add_scans.py")
    add.file_uploader(key="add_files").set_value([(name, data, "image/png")]).run()
    add.button(key="add_scans_go").click().run()
    assert not add.exception, [e.value for e in add.exception]
    reason = add.dataframe[0].value["reason"].iloc[0]
    assert words in reason and "decompression bomb" not in reason.lower()
    at = page(root, monkeypatch, "pages/neighbours.py", model=MODEL)
    at.file_uploader(key="nb_upload").upload(name, data, "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and reason in errors[0], (reason, errors)
    assert "BytesIO" not in errors[0] and "decompression bomb" not in errors[0].lower()


def test_decompression_bomb_wording_becomes_plain_words():
    from explorer.errors import plain

    assert plain("a.png: decompression bomb refused: 10000x10000 pixels exceed Pillow's limit of 89478485") == \
        "a.png: image too large: 10000×10000 pixels, limit 89,478,485 pixels"
    assert plain("decompression bomb refused: Image size (400000000 pixels) exceeds limit of 178956970 pixels, "
                 "could be decompression bomb DOS attack.") == \
        "image too large: 400,000,000 pixels, limit 178,956,970 pixels"
    assert plain("not an image (unrecognised or unsupported format)") == \
        "not an image (unrecognised or unsupported format)"


def test_no_page_writes_csv_without_defusing_formulas():
    """Every CSV download goes through corpus_index.csv_export.csv_bytes (see test_app_metadata for the data)."""
    sources = [APP_DIR / "app.py", *sorted((APP_DIR / "pages").glob("*.py")),
               *sorted((APP_DIR / "explorer").glob("*.py"))]
    writers = [path.name for path in sources if ".to_csv(" in path.read_text()]
    assert not writers
    downloads = [path.name for path in sources if '"text/csv"' in path.read_text()]
    assert downloads and all("csv_bytes(" in (APP_DIR / "pages" / name).read_text() for name in downloads)
