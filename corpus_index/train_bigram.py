"""Train the bigram network's digit detector on degraded print from the demo generator (deterministic).

The detector learns to put small Gaussian blobs on the centres of digits 0–9, from strips of table-like print
rendered with heavy degradation, about 40% of them negatives (Latin words, rules, ornaments, blank paper). One
typeface is held out (never seen in training) so that detection can be evaluated on an unseen fount.

Usage::

    python -m corpus_index.train_bigram --out bilrp_core/weights/bigram_detector.pt [--steps 3000] [--seed 0]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bilrp_core.bigram import DEFAULT_SHIFTS, MAP_STRIDE, digit_detector, to_ink

from .synthetic.fonts import TYPEFACES, load_font
from .synthetic.training import digit_training_pages

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
    tracks the digits' height, see :func:`bilrp_core.bigram.estimate_component_height`) matches it.
    """
    font_px = sum(FONT_PX) / 2 if font_px is None else font_px
    heights = []
    for name in fonts:
        font = load_font(name, int(round(font_px)))
        for digit in "0123456789":
            _, top, _, bottom = font.getbbox(digit, features=list(TYPEFACES[name].features))
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


def train(out, steps=3000, n_patches=4000, seed=0, batch_size=32, lr=2e-3, held_out=HELD_OUT, width=16, log=print):
    """Train and save the detector; returns the checkpoint dict."""
    fonts = [name for name in TYPEFACES if name != held_out]
    if not fonts:
        raise ValueError(f"holding out {held_out!r} leaves no typeface to train on")
    torch.manual_seed(seed)
    inks, targets = make_dataset(n_patches, seed, fonts)
    component_height = digit_height(fonts)
    model = digit_detector(width)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    generator = torch.Generator().manual_seed(seed)
    start, running = time.time(), None
    for step in range(1, steps + 1):
        idx = torch.randint(len(inks), (batch_size,), generator=generator)
        pred, target = model(inks[idx]), targets[idx]
        # blobs cover a few % of the map: weight them up so the detector does not learn "all zero"
        weight = 1.0 + 9.0 * target
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
        "width": width, "held_out": held_out, "fonts": fonts, "font_px": list(FONT_PX), "steps": steps,
        "n_patches": n_patches, "seed": seed, "final_loss": running,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out)  # atomic: a crash never leaves a half-written weights file
    log(f"saved {out} (print size: median glyph height {component_height:.1f} px)")
    return checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m corpus_index.train_bigram", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bilrp_core/weights/bigram_detector.pt", help="weights file to write")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--patches", type=int, default=4000, help="number of training strips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", default=HELD_OUT, help=f"typeface never seen in training (of {list(TYPEFACES)})")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.patches < 1:
        parser.error("--steps and --patches must be ≥ 1")
    if args.held_out not in TYPEFACES:
        parser.error(f"--held-out must be one of {list(TYPEFACES)}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    train(args.out, args.steps, args.patches, args.seed, held_out=args.held_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
