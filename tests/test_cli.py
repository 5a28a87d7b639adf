"""The command line on a tiny corpus: ingest, build, query, explain, export, info, and its errors."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from tiny_corpus import SMALL_VGG_KEY, make_sparse_corpus, write_source

from corpus_index.cli import build_parser, main
from corpus_index.corpus import Corpus
from corpus_index.models import UnknownModelKeyError, parse_model_key

REPO = Path(__file__).resolve().parent.parent
FORMULA = '=HYPERLINK("http://x","y")'  # a title a spreadsheet would run as a formula


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    source = write_source(base / "source", per_book=2)
    metadata = source / "metadata.csv"  # book b1's title and b2's printer would start formulas in a spreadsheet
    metadata.write_text(metadata.read_text().replace("Title b1", '"=HYPERLINK(""http://x"",""y"")"')
                        .replace(",Cavellat,", ",+cmd,"))
    root = base / "root"
    assert main(["--root", str(root), "ingest", str(source), "--csv", str(source / "metadata.csv")]) == 0
    assert main(["--root", str(root), "build", "--model", SMALL_VGG_KEY, "--batch-size", "3"]) == 0
    return root


def run(root, *args):
    return main(["--root", str(root), *args])


def test_query_prints_table_and_writes_csv(root, tmp_path, capsys):
    out = tmp_path / "hits.csv"
    assert run(root, "query", "--model", SMALL_VGG_KEY, "--item", "1", "-k", "3", "--csv", str(out)) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:3] == ["rank", "id", "score"]
    table = pd.read_csv(out)
    assert table["rank"].tolist() == [1, 2, 3] and 1 not in table["id"].tolist()
    assert table["score"].is_monotonic_decreasing
    assert run(root, "query", "--model", SMALL_VGG_KEY, "--item", "1", "--kind", "table",
               "--exclude-same-book", "--csv", str(out)) == 0
    table = pd.read_csv(out)
    assert set(table["kind"]) == {"table"} and "b0" not in set(table["book"])


def test_query_by_image(root, tmp_path, capsys):
    image = tmp_path / "upload.png"
    Image.new("RGB", (40, 30), (200, 180, 150)).save(image)
    assert run(root, "query", "--model", SMALL_VGG_KEY, "--image", str(image), "-k", "2") == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # header + 2 rows


def test_explain_writes_png_and_pair_csv(root, tmp_path):
    png, pairs = tmp_path / "pair.png", tmp_path / "pairs.csv"
    assert run(root, "explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", str(png), "--csv", str(pairs),
               "--pool", "4", "--pairs", "7") == 0
    with Image.open(png) as drawn:
        assert drawn.format == "PNG" and drawn.width > 100
    table = pd.read_csv(pairs)
    assert len(table) == 7
    assert {"relevance", "img1_x0", "img1_y1", "img2_x0", "orig1_x1"} <= set(table.columns)
    assert (table["img1_x1"] - table["img1_x0"]).eq(4).all()
    assert table["relevance"].abs().is_monotonic_decreasing
    # The CSV stands on its own: both items' metadata and the parameters on every row.
    items = Corpus.open(root).items().set_index("id")
    assert (table["item1"] == 1).all() and (table["item2"] == 2).all()
    assert (table["title1"] == items.loc[1, "title"]).all() and (table["source2"] == items.loc[2, "source"]).all()
    assert (table["model"] == SMALL_VGG_KEY).all() and (table["pool"] == 4).all() and table["score"].nunique() == 1


def test_export_every_item(root, tmp_path):
    out = tmp_path / "all.csv"
    assert run(root, "export", "--model", SMALL_VGG_KEY, "-k", "2", "--csv", str(out)) == 0
    table = pd.read_csv(out)
    assert len(table) == 8 * 2
    assert not (table["query_id"] == table["id"]).any()
    assert {"query_id", "rank", "id", "score", "book", "year"} <= set(table.columns)
    assert run(root, "export", "--model", SMALL_VGG_KEY, "--items", "3", "4", "-k", "1", "--exclude-same-book",
               "--csv", str(out)) == 0
    table = pd.read_csv(out)
    assert table["query_id"].tolist() == [3, 4]
    assert (table["query_book"] != table["book"]).all()


def test_errors_are_one_line_with_nonzero_status(root, tmp_path, capsys):
    cases = [
        (["query", "--model", "vgg16-L12-h8-seed0", "--item", "1"], "unknown model key"),
        (["query", "--model", SMALL_VGG_KEY, "--item", "999"], "no item with id 999"),
        (["explain", "--model", SMALL_VGG_KEY, "1", "999", "--out", str(tmp_path / "x.png")], "no item with id 999"),
        (["query", "--model", "vgg16-L10-h8-seed0-px32", "--item", "1"], "no index for model"),
        (["query", "--model", SMALL_VGG_KEY, "--image", str(tmp_path / "missing.png")], "not found"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert run(root, *args) == 1, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err, err
    assert run(tmp_path / "nowhere", "info") == 1
    assert "no corpus at" in capsys.readouterr().err
    assert run(root, "ingest") == 2


def test_info_and_help(root, capsys):
    assert run(root, "info") == 0
    assert f"model {SMALL_VGG_KEY}: 8 items indexed" in capsys.readouterr().out
    for command in ["demo", "ingest", "build", "query", "explain", "export", "info"]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out


@pytest.mark.slow
def test_module_entry_point_runs(root):
    result = subprocess.run([sys.executable, "-m", "corpus_index", "--root", str(root), "info"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "items: 8" in result.stdout


def test_build_with_factors_caches_every_item(root, capsys):
    assert run(root, "build", "--model", SMALL_VGG_KEY, "--factors", "--pool", "16", "--gamma", "0.1") == 0
    out = capsys.readouterr().out
    assert "0 computed, 8 already done" in out and "BiLRP factors: 8 computed" in out
    assert len(list((root / "factors" / SMALL_VGG_KEY).glob("*-p16/*.npy"))) == 8  # explain used p4


def test_build_factors_by_default_caches_the_explorers_patch_size(root, capsys):
    assert run(root, "build", "--model", SMALL_VGG_KEY, "--factors") == 0  # --pool auto
    assert "BiLRP factors: 8 computed" in capsys.readouterr().out
    # VGG's default (8 px, as the Explain page), plus the coarser sizes it falls back to, summed from them.
    assert {p.name.rsplit("-p", 1)[1] for p in (root / "factors" / SMALL_VGG_KEY).glob("*-p*")} >= {"8", "16"}
    assert len(list((root / "factors" / SMALL_VGG_KEY).glob("*-p8/*.npy"))) == 8
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "--model", SMALL_VGG_KEY, "--factors", "--pool", "big"])


def test_demo_generates_ingests_and_builds(tmp_path, capsys):
    root = tmp_path / "demo"
    assert main(["--root", str(root), "demo", "--books", "1", "--model", SMALL_VGG_KEY]) == 0
    out = capsys.readouterr().out
    assert (root / "demo-source" / "metadata.csv").is_file() and (root / "corpus.sqlite").is_file()
    added = int(out.split(" added")[0].rsplit(" ", 1)[-1])
    assert added > 0 and f"flat index holds {added} items" in out


def test_csv_exports_are_safe_to_open_in_a_spreadsheet(root, tmp_path, capsys):
    query_csv, export_csv = tmp_path / "query.csv", tmp_path / "export.csv"
    assert run(root, "query", "--model", SMALL_VGG_KEY, "--item", "1", "-k", "7", "--csv", str(query_csv)) == 0
    assert f"wrote 7 rows to {query_csv}" in capsys.readouterr().out
    assert run(root, "export", "--model", SMALL_VGG_KEY, "-k", "7", "--csv", str(export_csv)) == 0
    capsys.readouterr()
    assert run(root, "export", "--model", SMALL_VGG_KEY, "--items", "1", "-k", "7", "--csv", "-") == 0
    printed = capsys.readouterr().out
    assert "'=HYPERLINK" in printed and "wrote" not in printed  # on stdout the CSV is the whole output
    for path in (query_csv, export_csv):
        table = pd.read_csv(path)
        assert "'" + FORMULA in set(table["title"]) and FORMULA not in set(table["title"])
        assert "'+cmd" in set(table["printer"])
        for column in ("rank", "id", "score", "year", "page"):
            assert pd.api.types.is_numeric_dtype(table[column]), (path.name, column)


def test_every_verb_works_with_missing_metadata(tmp_path, capsys):
    corpus = make_sparse_corpus(tmp_path)
    root = corpus.root
    ids = corpus.items()["id"].astype(int).tolist()
    corpus.close()
    assert run(root, "build", "--model", SMALL_VGG_KEY, "--batch-size", "8") == 0
    for item_id in ids:
        assert run(root, "query", "--model", SMALL_VGG_KEY, "--item", str(item_id), "-k", "3",
                   "--exclude-same-book", "--csv", str(tmp_path / f"q{item_id}.csv")) == 0, item_id
    assert run(root, "query", "--model", SMALL_VGG_KEY, "--item", str(ids[0]), "--year-min", "1500",
               "--kind", "table", "--place", "Place complete-1") == 0
    out = tmp_path / "all.csv"
    assert run(root, "export", "--model", SMALL_VGG_KEY, "-k", "3", "--exclude-same-book", "--csv", str(out)) == 0
    assert len(pd.read_csv(out)) == 3 * len(ids)
    assert run(root, "explain", "--model", SMALL_VGG_KEY, str(ids[0]), str(ids[-2]), "--pool", "16",
               "--out", str(tmp_path / "pair.png"), "--csv", str(tmp_path / "pairs.csv")) == 0
    assert run(root, "info") == 0
    assert "error" not in capsys.readouterr().err


def test_model_keys_have_bounds_named_in_help_and_errors(capsys):
    for key, message in [("vgg16-L5-h8-seed0-px2048", "px must be from 32 to 1024"),
                         ("vgg16-L5-h5000-seed0", "h must be from 1 to 4096"),
                         ("vgg16-L5-h8-seed99999999999", "seed must be from 0 to 2147483647"),
                         ("vgg16-L5-h8-seed0-px" + "9" * 30, "px must be from 32 to 1024")]:
        with pytest.raises(UnknownModelKeyError, match=message):
            parse_model_key(key)
    assert parse_model_key("vgg16-L5-h4096-seed2147483647-px1024").image_size == 1024
    assert run(REPO / "nowhere", "query", "--model", "vgg16-L5-h8-seed0-px2048", "--item", "1") == 1
    assert "px must be from 32 to 1024" in capsys.readouterr().err
    epilog = " ".join(build_parser().format_help().split())
    assert "px a multiple of 32 from 32 to 1024" in epilog and "h from 1 to 4096" in epilog


def _app_table(explanation, items, originals, n):
    """The patch-pair table as the explorer computed it before the explanation knew its items' regions: boxes
    scaled to each item's size, then moved by its region's corner on the page (pages/explain.py)."""
    from bilrp_core.render import top_pairs
    from corpus_index.ingest.images import parse_region

    sizes, offsets = [], []
    for item, image in zip(items, originals, strict=True):
        region = parse_region(item.get("region"))
        sizes.append((region[2], region[3]) if region else image.size)
        offsets.append((region[0], region[1]) if region else (0, 0))
    table = top_pairs(explanation.pair, pool=explanation.pool, n=n,
                      input_sizes=(explanation.image1.size, explanation.image2.size), original_sizes=sizes)
    for side, (dx, dy) in enumerate(offsets, start=1):
        for column, offset in (("x0", dx), ("x1", dx), ("y0", dy), ("y1", dy)):
            table[f"orig{side}_{column}"] += offset
    return table


def test_explain_csv_of_a_region_item_has_page_coordinates_like_the_app(tmp_path):
    """A region item's patch boxes in the CLI's CSV are on its page, as the explorer's table shows them."""
    import numpy as np

    source = tmp_path / "scans"
    source.mkdir()
    rng = np.random.default_rng(3)
    for name, size in (("page.png", (96, 80)), ("other.png", (64, 64))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(source / name)
    (source / "metadata.csv").write_text(
        "path,kind,book,page,region\n"
        "page.png,table,B1,1,\"40,24,48,48\"\n"
        "other.png,table,B2,1,\n")
    root = tmp_path / "root"
    assert main(["--root", str(root), "ingest", str(source)]) == 0
    corpus = Corpus.open(root)
    region_id = int(corpus.items(book="B1")["id"].iloc[0])
    other_id = int(corpus.items(book="B2")["id"].iloc[0])
    csv = tmp_path / "pairs.csv"
    assert run(root, "explain", "--model", SMALL_VGG_KEY, str(region_id), str(other_id), "--pool", "8",
               "--pairs", "12", "--out", str(tmp_path / "pair.png"), "--csv", str(csv)) == 0
    table = pd.read_csv(csv)

    explanation = corpus.explain(SMALL_VGG_KEY, region_id, other_id, pool=8)
    items = [corpus.item(region_id), corpus.item(other_id)]
    expected = _app_table(explanation, items, [corpus.image(region_id), corpus.image(other_id)], 12)
    boxes = [f"orig{side}_{c}" for side in (1, 2) for c in ("x0", "y0", "x1", "y1")]
    pd.testing.assert_frame_equal(table[boxes], expected[boxes].reset_index(drop=True), check_dtype=False)
    assert table["orig1_x0"].min() >= 40 and table["orig1_y0"].min() >= 24  # inside the region on the page
    assert table["orig1_x1"].max() <= 88 and table["orig1_y1"].max() <= 72
    corpus.close()
