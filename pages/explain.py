"""Explain: why two scans are similar — the BiLRP pair explanation, heatmaps, numbers, and citable exports."""

import json

import streamlit as st

from bilrp_core.render import PairStyle, draw_pair, heatmap, web_annotation
from corpus_index.csv_export import csv_bytes
from corpus_index.models import model_label
from explorer import controls, data, errors, links, resources, shell
from explorer.captions import item_caption
from explorer.choices import encode_gamma
from explorer.progress import progress_bar

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
link = links.read_and_warn()
st.title("Explain a similarity")

upload = st.query_params.get("query") == "upload" and "upload_query" in st.session_state
pair = link["pair"]
with st.expander("Choose the pair", expanded=pair is None):
    first, second, go = st.columns([2, 2, 1])
    id1 = first.number_input("First item id", min_value=0, value=pair[0] if pair else None, step=1)
    id2 = second.number_input("Second item id", min_value=0, value=pair[1] if pair else None, step=1)
    if go.button("Explain", key="ex_go") and id1 is not None and id2 is not None:
        links.go("explain", pair=(int(id1), int(id2)), model=link["model"], gamma=link["gamma"])
pair = links.pair_or_stop(link, "Open a pair from the Neighbours page, or enter two item ids above.")

items = [None, None]
with errors.shown("Reading the pair"):
    items = [None if upload else data.item(pair[0]), data.item(pair[1])]
if items[1] is None or (items[0] is None and not upload):
    st.stop()
names = ["the uploaded scan" if upload else item_caption(items[0]), item_caption(items[1])]
st.markdown(f"**A:** {names[0]}  \n**B:** {names[1]}")


@st.fragment
def explanation_view() -> None:
    """Controls and the explanation: changing them reruns only this part of the page."""
    latest = links.read()
    panel, view = st.columns([1, 3], gap="large")
    with panel:
        model = controls.model_picker("ex", latest["model"], with_h=True)
        if model is None:
            return
        gamma = controls.gamma_controls("ex", model, latest["gamma"])
        shape = data.input_shape(root, model, pair[1])
        if st.session_state.get("_ex_pool_model") != model:  # a new model: its own default patch size
            st.session_state["ex_pool"] = data.default_pool(shape)
            st.session_state["_ex_pool_model"] = model
        pool = st.select_slider("Patch size (model-input pixels)", data.POOLS, key="ex_pool",
                                help="BiLRP relevance is summed over patches of this size (8 px in the paper).")
        top = st.slider("Patch pairs drawn", 1, 200, 30, key="ex_top", bind="query-params")
        threshold = st.slider("Only pairs above this fraction of the strongest (0 = off)", 0.0, 1.0, 0.0, step=0.05,
                              key="ex_threshold", bind="query-params")
        sign = st.radio("Relevance shown", ["both", "positive", "negative"], horizontal=True, key="ex_sign",
                        bind="query-params",
                        help="Red: the pair makes the pages similar; blue: it makes them less similar.")
    links.write(model=model, gamma=gamma)
    with view, errors.shown("Explaining the pair"):
        if upload:
            data.check_pair_size(shape, shape, pool)  # the upload is a page like the item
            with st.spinner("Computing the explanation of the uploaded scan …"):
                explanation = data.explain_upload(root, model, st.session_state["upload_query"], pair[1],
                                                  encode_gamma(gamma), pool)
            originals = [data.load_upload(st.session_state["upload_query"]), data.image(root, pair[1])]
        else:
            data.check_pair_size(data.input_shape(root, model, pair[0]), shape, pool)
            missing = data.missing_factors(model, pair, gamma, pool)
            if missing:
                holder = st.empty()  # the progress display goes away once the factors are cached
                with holder.status(f"Computing BiLRP factors of {len(missing)} page(s) for {model_label(model)} "
                                   f"(first time for this γ and patch size; cached afterwards) …", expanded=True):
                    data.compute_factors(model, pair, gamma, pool, progress_bar("starting …"))
                holder.empty()
            explanation = data.explain(model, pair[0], pair[1], gamma, pool)
            originals = [data.image(root, pair[0]), data.image(root, pair[1])]
        show(explanation, originals, model, gamma, pool, top, threshold, sign)


def show(explanation, originals, model, gamma, pool, top, threshold, sign) -> None:
    """Numbers, the pair picture, the heatmaps, the top pairs and the downloads."""
    numbers = st.columns(3)
    numbers[0].metric("Similarity y = ⟨φ(x), φ(x')⟩", f"{explanation.score:.5g}")
    numbers[1].metric("Σ of the explanation", f"{explanation.total:.5g}")
    share = explanation.total / explanation.score if explanation.score else float("nan")
    numbers[2].metric("Share explained", f"{share:.1%}",
                      help="Σ of the pair relevances / y; 100 % for bias-free ReLU networks (Proposition 1).")
    height = min(520, max(320, originals[0].height))
    picture = draw_pair(originals[0], originals[1], explanation.pair, top=top, threshold=threshold or None,
                        sign=sign, style=PairStyle(height=height))
    st.image(data.jpeg_bytes(picture), caption=f"{model_label(model)}, γ {encode_gamma(gamma)}, {pool}-px patches: the "
             f"{top} strongest patch pairs{'' if not threshold else f' above {threshold:.0%} of the strongest'}",
             width="stretch")
    maps = st.columns(2)
    for axis, column in enumerate(maps):
        column.image(data.jpeg_bytes(heatmap(explanation.pair, originals[axis], axis=axis, height=360)),
                     width="stretch",
                     caption=f"{'AB'[axis]}: relevance summed over the other page's patches")
    # Boxes on the model input and on the scans (a region item's on its page): the command line's table too.
    table = explanation.table(n=top, sign=sign, threshold=threshold or None)
    st.subheader("Strongest patch pairs")
    st.dataframe(table, hide_index=True, height=240)
    sources = [items[0].get("source") if items[0] else "upload:scan", items[1].get("source")]
    annotation = web_annotation(sources[0], sources[1], table, model_key=model, gamma=explanation.gamma,
                                score=explanation.score, total=explanation.total, pool=pool,
                                sizes=explanation.original_sizes, labels=tuple(names))
    stem = f"bilrp-{model}-{pair[0] if not upload else 'upload'}-{pair[1]}"
    downloads = st.columns(3)
    downloads[0].download_button("Picture (PNG)", lambda: data.png_bytes(picture), f"{stem}.png", "image/png",
                                 on_click="ignore", key="ex_png")
    downloads[1].download_button("Top patch pairs (CSV)", csv_bytes(table), f"{stem}.csv",
                                 "text/csv", on_click="ignore", key="ex_csv")
    downloads[2].download_button("Web Annotation (JSON-LD)", lambda: json.dumps(annotation, indent=1).encode(),
                                 f"{stem}.jsonld", "application/ld+json", on_click="ignore", key="ex_anno")
    if not upload:
        links.link("Compare models on this pair", "compare", pair=pair, model=model)


explanation_view()
