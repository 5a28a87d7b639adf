"""Compare models: one pair explained under two models side by side, and a strip of the same pair at several γ."""

import streamlit as st

from corpus_index.figure import pair_picture
from corpus_index.models import UNTRAINED_MARK, is_untrained, model_label
from explorer import config, controls, data, errors, links, resources, shell
from explorer.captions import item_caption
from explorer.progress import progress_bar

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
link = links.read_and_warn()
st.title("Compare models")
st.markdown("This page explains the **same pair of pages under two models** side by side, and under one model at "
            "several γ, to show what each model relies on — the digits of a table, or its borders and layout. "
            "Choose a model on each side; red links make the pages alike, blue ones less alike.")
with st.expander("Details"):
    st.markdown("The paper (Sec. 5.3) compares the bigram network with VGG-16 on tables: the bigram network "
                "matches pairs of digits, VGG-16 also matches borders and layout. Each side shows the similarity "
                "y(x, x') = ⟨φ(x), φ(x')⟩ of the model and Σ R of its BiLRP explanation (equal for bias-free ReLU "
                "networks, Proposition 1). γ is the LRP-γ parameter of every layer (Sec. 3).")

pair = links.pair_or_stop(link, "Open a pair from the Explain or Neighbours page (the link carries ?pair=ID1-ID2).")
originals = None
with errors.shown("Reading the pair"):
    originals = [data.image(root, pair[0]), data.image(root, pair[1])]
    st.markdown(f"**A:** {item_caption(data.item(pair[0]))}  \n**B:** {item_caption(data.item(pair[1]))}")
if originals is None:
    st.stop()

TOP = 30


def pool_of(model: str) -> int:
    """The model's default patch size (the Explain page's), larger when these pages would give too many pairs."""
    shapes = (data.input_shape(root, model, pair[0]), data.input_shape(root, model, pair[1]))
    return data.fitting_pool(shapes, model, data.default_pool(model))


def picture(result, height: int) -> bytes:
    """The pair on the scans with the strongest links, as JPEG bytes."""
    return data.jpeg_bytes(pair_picture(originals, result.table(n=TOP, offsets=((0, 0), (0, 0))), height=height))


def in_words(result, model: str) -> str:
    """What a side's numbers mean, in words."""
    share = result.total / result.score if result.score else float("nan")
    words = (f"Similarity **{result.score:.4g}** under this model; the links account for **{share:.0%}** of it "
             f"(Σ = {result.total:.4g}). Scores are comparable between pairs of one model, not between models.")
    return f"**{UNTRAINED_MARK.capitalize()}.** {words}" if is_untrained(model) else words


def explained(model: str, gamma, label: str):
    """The explanation of the pair, computing missing factors with a progress bar."""
    pool = pool_of(model)
    data.check_pair_size(data.input_shape(root, model, pair[0]), data.input_shape(root, model, pair[1]), pool, model)
    if data.missing_factors(model, pair, gamma, pool):
        bar = progress_bar(f"{label}: computing BiLRP factors …", label=label)
        data.compute_factors(model, pair, gamma, pool, bar)
        bar.empty()
    return data.explain(model, pair[0], pair[1], gamma, pool)


def ready(model: str, gamma, key: str, what: str) -> bool:
    """True when the factors are cached, or the user asked to compute them (they can take minutes)."""
    if not data.missing_factors(model, pair, gamma, pool_of(model)):
        return True
    st.caption(f"{what} needs BiLRP factors that are not cached yet (slow for large inputs and deep layers; "
               "cached afterwards).")
    return st.button(f"Compute {what}", key=key)


sides = st.columns(2, gap="large")
models = []
for column, prefix, start, param in ((sides[0], "cmpA", "bigram", None),
                                     (sides[1], "cmpB", link["model"] or config.default_model(), "model")):
    with column:
        model = controls.model_picker(prefix, start, label="Model", param=param)
        if model is None:
            continue
        with errors.shown(f"Explaining under {model}"):
            if not ready(model, None, f"{prefix}_go", "this explanation"):
                continue
            result = explained(model, None, model_label(model))
            models.append(model)  # only models that work here are offered for the γ strip
            st.image(picture(result, 300), width="stretch",
                     caption=f"{model_label(model)} (γ: the paper's schedule), {TOP} strongest pairs")
            st.markdown(f"y = **{result.score:.5g}**, Σ explanation = **{result.total:.5g}**")
            st.caption(in_words(result, model))

st.subheader("γ strip")
if not models:
    st.info("No explanation of this pair is shown above yet.")
else:
    model = st.selectbox("Model", models, format_func=model_label, key="cmp_strip_model")
    links.seed("cmp_gammas", [0.0, 0.1, 0.25, 0.5, 1.0])
    gammas = sorted(st.multiselect("γ values (one γ for every layer)", [0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0],
                                   key="cmp_gammas",
                                   help="γ = 0 shows every trace the model reacts to, positive and negative; "
                                        "larger γ keeps the main matches and hides the noise."))
    st.caption("Read the strip from left to right: links that stay as γ grows are the pair's robust evidence; "
               "links that appear only at γ = 0 are weak or cancel out.")
    with errors.shown("Computing the γ strip"):
        cached = all(not data.missing_factors(model, pair, g, pool_of(model)) for g in gammas)
        if gammas and not cached:
            st.caption("Some of these explanations are not cached yet; computing them takes a while for large "
                       "inputs and deep layers.")
        if gammas and (cached or st.button(f"Compute the strip ({len(gammas)} explanations)", key="cmp_strip")):
            strip = st.columns(len(gammas))
            for gamma, column in zip(gammas, strip, strict=True):
                with column:
                    result = explained(model, gamma, f"γ = {gamma:g}")
                    st.image(picture(result, 200), width="stretch")
                    st.caption(f"γ = {gamma:g}: Σ = {result.total:.4g}")
