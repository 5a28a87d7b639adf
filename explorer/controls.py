"""Widgets several pages share: the model chooser, the γ controls and the metadata filters.

Each is seeded from the deep link (:mod:`explorer.links`) and returns plain values (a model key, a γ, a dict
of filters); the pages decide what to do with them. The filters are bound to the URL by Streamlit
(``bind="query-params"``, the widget key as parameter: ``?nb_kind=table&nb_kind=diagram&nb_text=clavius``), so a
link restores them.

Which model is offered first follows the query's kind when the link names none (:func:`model_for_kind`): the
bigram network for tables (it compares the digits), VGG-16 for illustrations — with ImageNet weights when they
are installed, else the untrained network, whose output carries :data:`corpus_index.models.UNTRAINED_MARK`.
"""

from __future__ import annotations

import streamlit as st

from corpus_index.filters import BROWSE_FILTERS
from corpus_index.model_families import FAMILIES
from corpus_index.models import parse_model_key
from explorer import config, data, links
from explorer.captions import book_options
from explorer.choices import (
    PROJ_DIMS,
    blocks_for,
    chosen,
    compose,
    imagenet_available,
    imagenet_help,
    schedule_from_blocks,
    sized_base,
    valid_key,
    weights_missing,
    with_proj_dim,
)
from explorer.progress import progress_bar

GAMMA_MODES = {"default": "Paper's per-block schedule", "global": "One global γ", "blocks": "Per-block sliders"}
#: Kinds of items that are pictures: VGG-16 compares their shapes (tables go to the bigram network).
PICTURE_KINDS = ("illustration", "woodcut", "diagram", "title page")
FILTER_LABELS = {"kind": "Kind", "book": "Book", "place": "Place", "printer": "Printer"}


def _family(key: str) -> str | None:
    try:
        return parse_model_key(key).family
    except ValueError:  # a custom key
        return None


def model_for_kind(kind: str | None) -> str:
    """The model offered first for an item of ``kind``: the bigram network for tables (the first bigram key the
    explorer offers: built or configured); for pictures VGG-16 with ImageNet weights when installed, else the
    configured (untrained) VGG-16; the configured default for anything else."""
    default = config.default_model()
    if kind == "table":
        return next((key for key in links.known_models() if _family(key) == "bigram"), default)
    if kind in PICTURE_KINDS and imagenet_available():
        return compose("vgg16in", sized_base(default, *config.demo_models()))
    return default


def family_option(prefix: str) -> str:
    """A family's name in the model chooser (the registry's), noting weights that are not installed."""
    return FAMILIES[prefix].option + (" — weights not installed" if weights_missing(prefix) else "")


def item_kind(item_id: int | None) -> str | None:
    """The kind of a linked query item, or None (no item, no kind, or an id the corpus does not hold: the page
    reports that itself)."""
    from corpus_index.errors import ItemNotFoundError

    if item_id is None:
        return None
    try:
        return data.item(item_id).get("kind")
    except ItemNotFoundError:
        return None


def model_picker(prefix: str, link_model: str | None, label: str = "Model", with_h: bool = False,
                 container=None, param: str | None = "model", kind: str | None = None) -> str | None:
    """The model chooser: a family of the registry (:data:`corpus_index.model_families.FAMILIES`), its layer and
    switches (e.g. the bigram network's aligned routing), rotation/flip-max, and h.

    ``link_model`` is the starting model; it comes from the query parameter ``param`` (None: not from the
    link, e.g. a fixed default). Without one, the model of :func:`model_for_kind` for the query's ``kind``.

    Returns
    -------
    str or None
        The model key, or None when the chosen model cannot be used here (the reason is shown).
    """
    box = container or st
    start = valid_key(link_model) or model_for_kind(kind)
    try:
        start_family, spec = chosen(start)
    except ValueError:
        start_family, spec = chosen(config.default_model())
    base = sized_base(start, config.default_model(), *config.demo_models())
    source = (param,) if param else ()
    links.seed(f"{prefix}_family", start_family, *source)
    links.seed(f"{prefix}_layer", spec.layer or base.layer or 17, *source)
    links.seed(f"{prefix}_rot", spec.rotation_max, *source)
    for field in dict.fromkeys(s.field for family in FAMILIES.values() for s in family.switches):
        links.seed(f"{prefix}_{field}", getattr(spec, field), *source)
    family = FAMILIES[box.radio(label, list(FAMILIES), format_func=family_option, key=f"{prefix}_family")]
    layer = None
    if family.layers is not None:
        layer = box.select_slider("Layer", family.layers(), key=f"{prefix}_layer", help=family.layer_help)
    switches = {s.field: box.checkbox(s.label, key=f"{prefix}_{s.field}", help=s.help) for s in family.switches}
    rotation = box.checkbox("Rotation/flip-max", key=f"{prefix}_rot",
                            help="Similarity = the maximum over the 8 flips and rotations of one page.")
    key = compose(family.prefix, base, layer, rotation, **switches)
    if with_h and parse_model_key(key).proj_dim is not None:
        links.seed(f"{prefix}_h", base.proj_dim if base.proj_dim in PROJ_DIMS else 100, *source)
        h = box.select_slider("h (projected dimensions)", PROJ_DIMS, key=f"{prefix}_h",
                              help="Dimensions of the random projection; BiLRP costs grow with h.")
        key = with_proj_dim(key, h)
    if weights_missing(family.prefix):
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
        report = corpus.build(key, progress=progress_bar("starting …"))
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


def _book_filter(box, label: str, key: str, options: list[str], books) -> tuple[str, ...]:
    """The book filter: options named by their titles, the URL holding the book ids (``?nb_book=b01,b07``).

    Not bound by Streamlit, whose URL would carry the shown option (id, title and year) and break when a title
    is corrected; seeded from and written to the URL here instead.
    """
    wanted = [book for book in (st.query_params.get(key) or "").split(",") if book in options]
    links.seed(key, wanted, key)
    labels = book_options(books)
    chosen = box.multiselect(label, options, key=key, placeholder="any",
                             format_func=lambda book: labels.get(str(book), str(book)))
    links.write(**{key: ",".join(chosen) or None})
    return tuple(chosen)


def filters(prefix: str, version: tuple, container=None) -> dict:
    """Kind, book, place and printer (several values each), the year range and a text search over title,
    author, printer, place and file name; all bound to the URL. Returns only the filters set (values as tuples)."""
    box = container or st
    values = data.filter_values(str(data.corpus().root), version)
    books = values["books"]
    chosen = {}
    for name in BROWSE_FILTERS:
        label, key = FILTER_LABELS.get(name, name.capitalize()), f"{prefix}_{name}"
        if name == "book":
            chosen[name] = _book_filter(box, label, key, values[name], books)
            continue
        chosen[name] = tuple(box.multiselect(label, values[name], key=key, placeholder="any", bind="query-params"))
    years = values["years"]
    if years and years[0] < years[1]:
        low, high = box.slider("Years", years[0], years[1], (years[0], years[1]), key=f"{prefix}_years",
                               bind="query-params")
        if (low, high) != years:
            chosen["year_min"], chosen["year_max"] = int(low), int(high)
    chosen["text"] = box.text_input("Search", key=f"{prefix}_text", bind="query-params",
                                    placeholder="title, author, printer, place, file",
                                    help="Items whose title, author, printer, place or file name contain every "
                                         "word typed here (case does not matter).").strip()
    return data.clean_filters(chosen)
