"""Widgets several pages share: the model chooser, the γ controls and the metadata filters.

Each is seeded from the deep link (:mod:`explorer.links`) and returns plain values (a model key, a γ, a dict
of filters); the pages decide what to do with them.
"""

from __future__ import annotations

import streamlit as st

from corpus_index.models import VGG_LAYERS
from explorer import config, data, links
from explorer.choices import (
    BIGRAM,
    FAMILIES,
    PROJ_DIMS,
    ModelChoice,
    blocks_for,
    choice_of,
    imagenet_available,
    imagenet_help,
    schedule_from_blocks,
    valid_key,
    vgg_base,
    with_proj_dim,
)

GAMMA_MODES = {"default": "Paper's per-block schedule", "global": "One global γ", "blocks": "Per-block sliders"}


def model_picker(prefix: str, link_model: str | None, label: str = "Model", with_h: bool = False,
                 container=None, param: str | None = "model") -> str | None:
    """Family (bigram / VGG-16 ImageNet / untrained VGG-16), VGG layer or aligned routing, rotation/flip-max (and h).

    ``link_model`` is the starting model; it comes from the query parameter ``param`` (None: not from the
    link, e.g. a fixed default).

    Returns
    -------
    str or None
        The model key, or None when the chosen model cannot be used here (the reason is shown).
    """
    box = container or st
    start = valid_key(link_model) or config.default_model()
    try:
        choice = choice_of(start)
    except ValueError:
        choice = choice_of(config.default_model())
    base = vgg_base(start, config.default_model(), *config.demo_models())
    source = (param,) if param else ()
    links.seed(f"{prefix}_family", choice.family, *source)
    links.seed(f"{prefix}_layer", choice.layer or base.layer or 17, *source)
    links.seed(f"{prefix}_rot", choice.rotation_max, *source)
    links.seed(f"{prefix}_aligned", choice.aligned, *source)
    links.seed(f"{prefix}_root", choice.root, *source)
    families = list(FAMILIES)
    family = box.radio(label, families, format_func=lambda f: FAMILIES[f] + (
        "" if f != "vgg16in" or imagenet_available() else " — weights not installed"), key=f"{prefix}_family")
    layer = None
    if family != BIGRAM:
        layer = box.select_slider("VGG-16 layer", VGG_LAYERS, key=f"{prefix}_layer",
                                  help="Similarity on the features after this max-pooling layer of VGG-16.")
    aligned = family == BIGRAM and box.checkbox(
        "Aligned digit routing", key=f"{prefix}_aligned",
        help="The same similarities; the explanation links first digits of a bigram to first digits and second to "
             "second (more faithful on the demo corpus: 0.87 vs 0.65 of the relevance on matching digits), but "
             "takes twice as long.")
    root = family != BIGRAM or box.checkbox(
        "Square roots of bigram counts", key=f"{prefix}_root",
        help="Compare tables on the square roots of their digit-pair counts, so that the rarer pairs in which "
             "near-identical tables differ count (demo corpus: mAP@10 0.91 vs 0.87). Unticked: the paper's plain "
             "counts, whose explanations put slightly more relevance on matching digits (0.68 vs 0.65).")
    rotation = box.checkbox("Rotation/flip-max", key=f"{prefix}_rot",
                            help="Similarity = the maximum over the 8 flips and rotations of one page.")
    key = ModelChoice(family, layer, rotation, aligned, root).key(base)
    if with_h and family != BIGRAM:
        links.seed(f"{prefix}_h", base.proj_dim if base.proj_dim in PROJ_DIMS else 100, *source)
        h = box.select_slider("h (projected dimensions)", PROJ_DIMS, key=f"{prefix}_h",
                              help="Dimensions of the random projection; BiLRP costs grow with h.")
        key = with_proj_dim(key, h)
    if family == "vgg16in" and not imagenet_available():
        box.warning(imagenet_help())
        return None
    return key


def model_status(key: str) -> None:
    """Say whether a model's index is built, and offer to build it (with progress)."""
    corpus = data.corpus()
    if key in corpus.models():
        return
    st.info(f"The index for **{key}** is not built yet: neighbours need it (explanations do not).")
    if st.button(f"Build the index for {key}", key=f"build_{key}"):
        bar = st.progress(0.0, text="starting …")

        def progress(done, total, message):
            bar.progress(min(1.0, done / total) if total else 0.0, text=f"{message} ({done}/{total})")

        report = corpus.build(key, progress=progress)
        st.success(report.summary().splitlines()[0])
        st.rerun()


def gamma_controls(prefix: str, model_key: str, link_gamma, container=None):
    """γ as the paper's schedule, one global value, or one slider per block of layers; returns the γ."""
    box = container or st
    schedule = data.schedule(model_key, None)
    blocks = blocks_for(schedule, model_key)
    family = model_key.split("-")[0]  # block sliders per model family: their layers differ
    mode = "default" if link_gamma is None else ("blocks" if isinstance(link_gamma, dict) else "global")
    links.seed(f"{prefix}_gmode", mode, "gamma")
    links.seed(f"{prefix}_gglobal", float(link_gamma) if mode == "global" else 0.25, "gamma")
    for number, (_, members, default) in enumerate(blocks):
        value = link_gamma.get(members[0], default) if isinstance(link_gamma, dict) else default
        links.seed(f"{prefix}_gblock{number}_{family}", float(value), "gamma")
    mode = box.radio("γ (LRP-γ rule)", list(GAMMA_MODES), format_func=GAMMA_MODES.get, key=f"{prefix}_gmode",
                     help="γ > 0 favours positive contributions and makes explanations more robust (Sec. 3).")
    if mode == "global":
        return float(box.slider("γ for every layer", 0.0, 2.0, step=0.05, key=f"{prefix}_gglobal"))
    if mode == "blocks":
        values = [box.slider(f"γ, {label}", 0.0, 2.0, step=0.05, key=f"{prefix}_gblock{number}_{family}")
                  for number, (label, _, _) in enumerate(blocks)]
        return schedule_from_blocks(blocks, values)
    return None


def filters(prefix: str, version: tuple, container=None) -> dict:
    """Kind, book, year range, place and printer filters; returns only those set."""
    box = container or st
    values = data.filter_values(str(data.corpus().root), version)
    chosen = {}
    for name in ("kind", "book", "place", "printer"):
        options = ["any", *values[name]]
        chosen[name] = box.selectbox(name.capitalize(), options, key=f"{prefix}_{name}")
    years = values["years"]
    if years and years[0] < years[1]:
        low, high = box.slider("Years", years[0], years[1], (years[0], years[1]), key=f"{prefix}_years")
        if (low, high) != years:
            chosen["year_min"], chosen["year_max"] = int(low), int(high)
    return data.clean_filters(chosen)
