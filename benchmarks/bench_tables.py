"""Measured quality of the bigram network, VGG-16 and the rotation/flip-max model on the demo corpus.

1. Digit detection on demo table pages set in the typeface held out from the detector's training:
   precision, recall, F1 (a detection is right when its centre falls in an unmatched glyph box of that digit).
2. Table retrieval (relevant = same `group`): mAP@10 and precision@1 of the bigram network (also without its
   detection threshold, and with the plain bigram sums instead of their square roots) beside VGG-16 at
   layers 17 and 31 (random weights: ImageNet weights cannot be fetched on this machine).
3. Explanation faithfulness: on pairs of editions of one table, the share of positive BiLRP relevance (pooled on
   a fine grid) linking a digit glyph in one page to a glyph of the same digit in the other; for the bigram
   network with the plain gradient rule through the min (the default) and with aligned pooling.
4. Illustrations: precision@1 of VGG-16 with and without the rotation/flip-max.
5. The bigram network's retrieval and held-out detection on further demo corpora (``--more-seeds``): one corpus
   of 13 groups is a small sample, and corpora of different seeds differ by a few hundredths of mAP@10.

Usage: .venv/bin/python -m benchmarks.bench_tables [--books 24] [--pairs 6] [--more-seeds 1 2 3]
       (writes benchmarks/results/tables.json and prints a summary)
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bilrp_core import RotationMax, bigram_network, relevance_factors, vgg16_similarity
from bilrp_core.bigram import DEFAULT_THRESHOLD, BigramOptions, detect_digits, load_detector_weights
from bilrp_core.page_ink import normalise_page
from corpus_index.synthetic import generate_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "tables.json"


def detection_scores(model, pages, glyphs, root):
    tp = n_found = n_true = 0
    for path in pages:
        boxes = glyphs[glyphs.path == path][["digit", "x0", "y0", "x1", "y1"]].to_numpy()
        used = np.zeros(len(boxes), dtype=bool)
        found = detect_digits(model, Image.open(root / path))
        n_found += len(found)
        n_true += len(boxes)
        for digit, x, y, _ in sorted(found, key=lambda f: -f[3]):
            hit = (boxes[:, 0] == digit) & (boxes[:, 1] <= x) & (x <= boxes[:, 3]) & (boxes[:, 2] <= y) \
                & (y <= boxes[:, 4]) & ~used
            if hit.any():
                used[np.argmax(hit)] = True
                tp += 1
    precision, recall = tp / max(n_found, 1), tp / max(n_true, 1)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / max(precision + recall, 1e-12),
            "pages": len(pages), "glyphs": n_true, "detections": n_found}


def retrieval_scores(scores, groups):
    """mAP@10 and precision@1 from a (n, n) score matrix (the query itself excluded)."""
    scores = scores.copy()
    np.fill_diagonal(scores, -np.inf)
    aps, p1 = [], []
    for q in range(len(groups)):
        relevant = groups == groups[q]
        relevant[q] = False
        if not relevant.any():
            continue
        ranked = np.argsort(-scores[q])[:10]
        hits = relevant[ranked]
        precisions = np.cumsum(hits) / np.arange(1, len(ranked) + 1)
        aps.append(float((precisions * hits).sum() / min(relevant.sum(), 10)))
        p1.append(float(hits[0]))
    return {"map@10": float(np.mean(aps)), "precision@1": float(np.mean(p1)), "queries": len(aps)}


@torch.no_grad()
def features(model, paths, root):
    return torch.cat([model(model.preprocess(Image.open(root / p))) for p in paths]).double().numpy()


def digit_masks(boxes, scale, grid, pool):
    """(cells, 10) booleans: which digits have a glyph box (page px) overlapping each cell of the pooled grid."""
    masks = np.zeros((grid[0], grid[1], 10), dtype=bool)
    sx, sy = scale
    for digit, x0, y0, x1, y1 in boxes:
        r0, r1 = int(y0 * sy) // pool, min(grid[0], int(np.ceil(y1 * sy / pool)))
        c0, c1 = int(x0 * sx) // pool, min(grid[1], int(np.ceil(x1 * sx / pool)))
        masks[r0:r1, c0:c1, int(digit)] = True
    return torch.from_numpy(masks.reshape(-1, 10)).double()


def same_digit_share(factors1, factors2, masks1, masks2, block=2048):
    """Share of positive pair relevance on cell pairs holding a glyph of the same digit in both pages.

    The pair matrix of two pages on a fine grid is too large to hold, so it is formed block by block, over the
    cells that hold any relevance (relevance lands on ink only: about a quarter of a table page's cells).
    """
    f1, f2 = factors1.reshape(factors1.shape[0], -1).double(), factors2.reshape(factors2.shape[0], -1).double()
    keep1, keep2 = (f1 != 0).any(dim=0), (f2 != 0).any(dim=0)
    f1, f2, masks1, masks2 = f1[:, keep1], f2[:, keep2], masks1[keep1], masks2[keep2]
    total = good = 0.0
    for start in range(0, f1.shape[1], block):
        part = (f1[:, start:start + block].T @ f2).clamp(min=0)
        total += float(part.sum())
        same = (masks1[start:start + block] @ masks2.T) > 0
        good += float(part[same].sum())
    return good / total if total > 0 else float("nan")


def faithfulness(model, pairs, glyphs, root, pool, scale_of):
    shares = []
    for a, b in pairs:
        out = []
        for path in (a, b):
            image = Image.open(root / path)
            x = model.preprocess(image)
            factors = relevance_factors(model, x, pool=pool)
            boxes = glyphs[glyphs.path == path][["digit", "x0", "y0", "x1", "y1"]].to_numpy()
            out.append((factors, digit_masks(boxes, scale_of(image, x), factors.shape[1:], pool)))
        shares.append(same_digit_share(out[0][0], out[1][0], out[0][1], out[1][1]))
    return {"mean_share": float(np.nanmean(shares)), "shares": shares, "pairs": len(pairs), "pool": pool}


def rotation_p1(model, paths, groups, root):
    wrapped = RotationMax(model)
    plain = features(model, paths, root)
    with torch.no_grad():
        all8 = torch.stack([wrapped.transformed_features(model.preprocess(Image.open(root / p))) for p in paths])
    flat = all8.reshape(-1, all8.shape[-1]).double()
    rot = (flat @ flat.T).reshape(len(paths), 8, len(paths), 8).amax(dim=(1, 3)).numpy()
    return {"plain": retrieval_scores(plain @ plain.T, groups), "rotation_max": retrieval_scores(rot, groups)}


def bigram_scores(bigram, tables, glyphs, root):
    """Detection on the pages set in the detector's held-out typeface, and table retrieval, of ``bigram``."""
    held_out = load_detector_weights()[1]["held_out"]
    unseen = tables[tables.typeface == held_out].path.tolist()
    f = features(bigram, tables.path, root)
    return {"retrieval": retrieval_scores(f @ f.T, tables.group.to_numpy()),
            "detection_held_out_typeface": {"typeface": held_out, **detection_scores(bigram, unseen, glyphs, root)}}


def bigram_on_corpus(seed, books):
    """:func:`bigram_scores` of the default bigram network on a freshly generated demo corpus."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_corpus(root, books=books, seed=seed)
        meta, glyphs = pd.read_csv(root / "metadata.csv"), pd.read_csv(root / "glyphs.csv")
        return bigram_scores(bigram_network(), meta[meta.kind == "table"].reset_index(drop=True), glyphs, root)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=24)
    parser.add_argument("--pairs", type=int, default=6, help="edition pairs for the faithfulness measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--more-seeds", type=int, nargs="*", default=[1, 2, 3],
                        help="seeds of further demo corpora for the bigram network's retrieval and detection")
    args = parser.parse_args()
    torch.manual_seed(0)
    command = f"python -m benchmarks.bench_tables --books {args.books} --pairs {args.pairs}"
    if args.seed:
        command += f" --seed {args.seed}"
    if args.more_seeds != parser.get_default("more_seeds"):
        command += " --more-seeds " + " ".join(map(str, args.more_seeds))
    results, started = {"command": command}, time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta = generate_corpus(root, books=args.books, seed=args.seed)
        meta = pd.read_csv(root / "metadata.csv")
        glyphs = pd.read_csv(root / "glyphs.csv")
        tables = meta[meta.kind == "table"].reset_index(drop=True)
        bigram = bigram_network()
        checkpoint = load_detector_weights()[1]
        results["detector"] = {k: checkpoint.get(k) for k in ("steps", "n_patches", "n_pages", "crops_per_page",
                                                               "context", "gated", "width", "held_out",
                                                               "fonts")}
        own = bigram_scores(bigram, tables, glyphs, root)
        results["detection_held_out_typeface"] = own["detection_held_out_typeface"]
        groups = tables.group.to_numpy()
        retrieval = {"bigram": own["retrieval"]}
        results["detector"]["threshold"] = DEFAULT_THRESHOLD  # of the default bigram network
        for name, model in [("bigram-no-threshold", bigram_network(BigramOptions(threshold=0))),
                            # the paper's φ, no square root
                            ("bigram-plain-sums", bigram_network(BigramOptions(sqrt=False))),
                            ("vgg16-L17-random", vgg16_similarity(17)),
                            ("vgg16-L31-random", vgg16_similarity(31))]:
            f = features(model, tables.path, root)
            retrieval[name] = retrieval_scores(f @ f.T, groups)
        results["table_retrieval"] = retrieval
        rng = np.random.default_rng(args.seed)
        pairs = []
        for group in rng.permutation(tables.group.unique()):
            editions = tables[tables.group == group]
            if len(editions) >= 2 and len(pairs) < args.pairs:
                a, b = rng.choice(editions.path.to_numpy(), 2, replace=False)
                pairs.append((a, b))

        def bigram_scale(image, x):
            return normalise_page(image, bigram.component_height)[1]

        def vgg_scale(image, x):
            return x.shape[-1] / image.width, x.shape[-2] / image.height

        results["faithfulness"] = {
            # the default: the gradient rule through the min (a bigram's relevance to its weaker digit)
            "bigram-plain-routing": faithfulness(bigram, pairs, glyphs, root, 4, bigram_scale),
            # the same similarity with aligned pooling (first copy to the first digit, second to the second)
            "bigram-aligned": faithfulness(bigram_network(BigramOptions(aligned=True)), pairs, glyphs, root, 4,
                                           bigram_scale),
            # 256 px, not 128: at 128 px a table's digits are 1-2 px tall and nothing could match them
            "vgg16-L17-random-256px": faithfulness(vgg16_similarity(17, image_size=256), pairs, glyphs, root, 4,
                                                   vgg_scale),
        }
        illus = meta[meta.kind == "illustration"].reset_index(drop=True)
        results["illustrations_vgg16-L17-random"] = rotation_p1(vgg16_similarity(17), illus.path.tolist(),
                                                                illus.group.to_numpy(), root)
    if args.more_seeds:
        corpora = {args.seed: own}
        for seed in dict.fromkeys(s for s in args.more_seeds if s != args.seed):
            print(f"demo corpus seed {seed} …", flush=True)
            corpora[seed] = bigram_on_corpus(seed, args.books)
        results["bigram_per_corpus"] = {
            "seeds": corpora,
            "mean_map@10": float(np.mean([c["retrieval"]["map@10"] for c in corpora.values()])),
            "mean_precision@1": float(np.mean([c["retrieval"]["precision@1"] for c in corpora.values()])),
            "mean_held_out_f1": float(np.mean([c["detection_held_out_typeface"]["f1"] for c in corpora.values()])),
        }
    results["seconds"] = time.time() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
