"""Train the bigram network's digit detector on degraded print from the demo generator (deterministic).

The detector learns to put small Gaussian blobs on the centres of digits 0–9 (by default with its context layers
in a gate, :class:`bilrp_core.detector.GatedDigitMaps`), from strips of table-like print
rendered with heavy degradation (about half of them negatives: headings, row labels, letters that look like
figures, Latin words, rules, ornaments, blank paper) and from crops of whole demo pages scaled as at inference.
Empty places where the detector still responds (heading capitals, rule ends) weigh more in the loss.
Print comes in the demo corpus's typefaces and seven training-only book faces; one demo typeface is held out
(never seen in training) so that detection can be evaluated on an unseen fount. The defaults are the settings
the shipped weights were trained with (a test ties the two); docs/bigram-network.md records what the training
cost and why more rendered print, rather than more steps, is the default.

Usage::

    python -m corpus_index.train_bigram --out bilrp_core/weights/bigram_detector.pt [--steps 8000] [--seed 0]
"""

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bilrp_core.bigram import DEFAULT_SHIFTS
from bilrp_core.detector import MAP_STRIDE, digit_detector
from bilrp_core.page_ink import normalise_page, to_ink

from .synthetic.fonts import TRAINING_TYPEFACES, TYPEFACES, load_font
from .synthetic.training import digit_training_pages, training_book_pages

#: Font sizes (px) of training print: digits advance ~10 px, i.e. 2-3 map pixels, matching DEFAULT_SHIFTS.
FONT_PX = (16, 24)
PATCH = (96, 192)
HELD_OUT = "Cardo"
#: Blob widths in map pixels; taller than wide because old-style figures sit at different heights.
SIGMA = (1.2, 0.8)


def blob_targets(centres, shape, sigma=SIGMA):
    """(10, H/4, W/4) maps with a Gaussian blob (peak 1) at each digit centre, max where blobs overlap."""
    height, width = shape[0] // MAP_STRIDE, shape[1] // MAP_STRIDE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    target = np.zeros((10, height, width), dtype=np.float32)
    for digit, cx, cy in centres:
        mx, my = (cx + 0.5) / MAP_STRIDE - 0.5, (cy + 0.5) / MAP_STRIDE - 0.5
        blob = np.exp(-0.5 * (((ys - my) / sigma[0]) ** 2 + ((xs - mx) / sigma[1]) ** 2))
        target[digit] = np.maximum(target[digit], blob)
    return target


def digit_height(fonts, font_px=None):
    """Median ink height (px) of the digits 0–9 in ``fonts`` at ``font_px``: the print size the detector learns.

    Pages are later rescaled so that the median height of their glyph-like components (which on table pages
    tracks the digits' height, see :func:`bilrp_core.page_ink.estimate_component_height`) matches it.
    """
    font_px = sum(FONT_PX) / 2 if font_px is None else font_px
    heights = []
    for name in fonts:
        font = load_font(name, int(round(font_px)))
        features = list({**TYPEFACES, **TRAINING_TYPEFACES}[name].features)
        for digit in "0123456789":
            _, top, _, bottom = font.getbbox(digit, features=features)
            heights.append(bottom - top)
    return float(np.median(heights))


def make_dataset(n, seed, fonts, progress=None):
    """Ink tensors (n, 1, H, W) and blob targets (n, 10, H/4, W/4) of degraded training print."""
    patches = digit_training_pages(n, seed=seed, fonts=fonts, size=PATCH, font_px=FONT_PX)
    inks, targets = [], []
    for i, (image, centres) in enumerate(patches):
        ink = to_ink(image)
        inks.append(ink)
        targets.append(blob_targets(centres, ink.shape))
        if progress:
            progress(i + 1, n, "rendering training print")
    return torch.from_numpy(np.stack(inks))[:, None], torch.from_numpy(np.stack(targets))


def page_crops(n_pages, crops_per_page, seed, fonts, component_height, size=PATCH, near_digit=0.5, log=None):
    """Crops of whole demo pages, normalised as at inference, and their blob targets.

    A share ``near_digit`` of the crops is centred near a random digit (with an offset), the rest anywhere:
    headings, labels, rules, woodcuts and margins are the negatives the detector meets on real pages.
    ``log`` (optional) gets a line per 500 pages rendered.
    """
    rng = np.random.default_rng([seed, 7])
    # filled in place: a list of arrays stacked at the end would hold the crops twice at the peak
    inks = np.zeros((n_pages * crops_per_page, *size), dtype=np.float32)
    targets = np.zeros((len(inks), 10, size[0] // MAP_STRIDE, size[1] // MAP_STRIDE), dtype=np.float32)
    start = time.time()
    for i, (scan, boxes) in enumerate(training_book_pages(n_pages, seed=seed, fonts=fonts), 1):
        if log and (i % 500 == 0 or i == n_pages):
            log(f"rendered {i}/{n_pages} pages ({time.time() - start:.0f} s)")
        page, (sx, sy) = normalise_page(scan, component_height)
        page = page[0, 0].numpy()
        centres = [(d, (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy) for d, x0, y0, x1, y1 in boxes]
        for n in range((i - 1) * crops_per_page, i * crops_per_page):
            if centres and rng.random() < near_digit:
                _, cx, cy = centres[int(rng.integers(len(centres)))]
                top = int(cy + rng.uniform(-0.4, 0.4) * size[0]) - size[0] // 2
                left = int(cx + rng.uniform(-0.4, 0.4) * size[1]) - size[1] // 2
            else:
                top = int(rng.integers(-size[0] // 4, max(1, page.shape[0] - size[0] * 3 // 4)))
                left = int(rng.integers(-size[1] // 4, max(1, page.shape[1] - size[1] * 3 // 4)))
            top, left = top - top % MAP_STRIDE, left - left % MAP_STRIDE  # keep the map grid aligned
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + size[0], page.shape[0]), min(left + size[1], page.shape[1])
            if y1 > y0 and x1 > x0:
                inks[n, y0 - top:y1 - top, x0 - left:x1 - left] = page[y0:y1, x0:x1]
            inside = [(d, cx - left, cy - top) for d, cx, cy in centres
                      if 0 <= cx - left < size[1] and 0 <= cy - top < size[0]]
            targets[n] = blob_targets(inside, size)
    return torch.from_numpy(inks)[:, None], torch.from_numpy(targets)


def training_fonts(held_out=HELD_OUT):
    """Every typeface but the held-out one: the demo corpus's and the training-only faces."""
    fonts = [name for name in {**TYPEFACES, **TRAINING_TYPEFACES} if name != held_out]
    if not fonts:
        raise ValueError(f"holding out {held_out!r} leaves no typeface to train on")
    return fonts


def train(out, steps=8000, n_patches=16000, seed=0, batch_size=32, lr=2e-3, held_out=HELD_OUT, width=16,
          n_pages=12000, crops_per_page=4, context=3, near_digit=0.5, false_positive_weight=8.0, gated=True,
          log=print):
    """Train and save the detector; returns the checkpoint dict.

    Training print is ``n_patches`` rendered strips plus ``crops_per_page`` crops of each of ``n_pages`` whole
    pages, all in every typeface but ``held_out``. ``false_positive_weight`` adds to the loss weight of map
    pixels that should be empty but respond above 0.2 (hard negatives: heading capitals, rule ends). ``gated``
    puts the ``context`` layers into a gate on the digit maps (:class:`bilrp_core.detector.GatedDigitMaps`).
    """
    fonts = training_fonts(held_out)
    torch.manual_seed(seed)
    component_height = digit_height(fonts)
    start = time.time()
    inks, targets = make_dataset(n_patches, seed, fonts)
    log(f"rendered {n_patches} strips ({time.time() - start:.0f} s)")
    if n_pages:
        crop_inks, crop_targets = page_crops(n_pages, crops_per_page, seed, fonts, component_height,
                                             near_digit=near_digit, log=log)
        inks, targets = torch.cat([inks, crop_inks]), torch.cat([targets, crop_targets])
        del crop_inks, crop_targets  # the concatenation is a copy: keep the training print once in memory
    log(f"{len(inks)} training patches ({n_patches} strips, {n_pages} x {crops_per_page} page crops), "
        f"{len(fonts)} typefaces")
    model = digit_detector(width, context=context, gated=gated)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    generator = torch.Generator().manual_seed(seed)
    start, running = time.time(), None
    for step in range(1, steps + 1):
        idx = torch.randint(len(inks), (batch_size,), generator=generator)
        pred, target = model(inks[idx]), targets[idx]
        # blobs cover a few % of the map: weight them up so the detector does not learn "all zero"; and weight
        # every map at a digit, so that a '3' firing the '8' map (the commonest error seen) costs as much
        weight = 1.0 + 9.0 * target + 9.0 * target.amax(dim=1, keepdim=True)
        if false_positive_weight:
            weight = weight + false_positive_weight * ((target < 0.05) & (pred.detach() > 0.2))
        loss = (weight * (pred - target) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == steps:
            log(f"step {step}/{steps}  loss {running:.5f}  ({time.time() - start:.0f} s)")
    checkpoint = {
        "state_dict": model.state_dict(), "component_height": component_height, "shifts": list(DEFAULT_SHIFTS),
        "width": width, "context": context, "gated": gated, "held_out": held_out, "fonts": fonts,
        "font_px": list(FONT_PX),
        "steps": steps, "n_patches": n_patches, "n_pages": n_pages, "crops_per_page": crops_per_page, "seed": seed,
        "near_digit": near_digit, "false_positive_weight": false_positive_weight,
        "final_loss": running,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out)  # atomic: a crash never leaves a half-written weights file
    log(f"saved {out} (print size: median glyph height {component_height:.1f} px)")
    return checkpoint


def training_defaults():
    """``train()``'s keyword defaults, the one place they are stated: the flags and the shipped weights use them."""
    return {name: p.default for name, p in inspect.signature(train).parameters.items()
            if p.default is not inspect.Parameter.empty}


def main(argv=None):
    default = training_defaults()
    parser = argparse.ArgumentParser(prog="python -m corpus_index.train_bigram", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="bilrp_core/weights/bigram_detector.pt", help="weights file to write")
    parser.add_argument("--steps", type=int, default=default["steps"], help="optimiser steps")
    parser.add_argument("--patches", type=int, default=default["n_patches"], help="number of training strips")
    parser.add_argument("--pages", type=int, default=default["n_pages"],
                        help="whole demo pages to crop training print from")
    parser.add_argument("--crops", type=int, default=default["crops_per_page"], help="crops per whole page")
    parser.add_argument("--context", type=int, default=default["context"],
                        help="dilated context layers of the detector")
    parser.add_argument("--gated", action=argparse.BooleanOptionalAction, default=default["gated"],
                        help="context layers gate the digit maps (explanations stay on the digit) or feed them")
    parser.add_argument("--near-digit", type=float, default=default["near_digit"],
                        help="share of page crops centred near a digit")
    parser.add_argument("--false-positive-weight", type=float, default=default["false_positive_weight"],
                        help="extra loss weight on empty map pixels that respond above 0.2")
    parser.add_argument("--seed", type=int, default=default["seed"], help="seed of the training print and the weights")
    parser.add_argument("--held-out", default=default["held_out"],
                        help=f"typeface never seen in training (of {list(TYPEFACES)})")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.patches < 1:
        parser.error("--steps and --patches must be ≥ 1")
    if args.pages < 0 or args.crops < 1 or args.context < 0:
        parser.error("--pages and --context must be ≥ 0, --crops ≥ 1")
    if not 0 <= args.near_digit <= 1 or args.false_positive_weight < 0:
        parser.error("--near-digit must be in [0, 1], --false-positive-weight ≥ 0")
    if args.held_out not in TYPEFACES:
        parser.error(f"--held-out must be one of {list(TYPEFACES)}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    train(args.out, args.steps, args.patches, args.seed, held_out=args.held_out, n_pages=args.pages,
          crops_per_page=args.crops, context=args.context, near_digit=args.near_digit,
          false_positive_weight=args.false_positive_weight, gated=args.gated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
