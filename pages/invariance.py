"""Invariance: Inv of Eq. (7) per VGG-16 layer over editions of the same page, the similarity matrix with its
local band, and BiLRP explanations of the pairs that make up the local average (Sec. 5.2 of the paper)."""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from bilrp_core.invariance import invariance, local_band_mask, local_pairs, similarity_matrix
from corpus_index.model_families import FAMILIES
from corpus_index.models import model_label
from explorer import config, controls, data, errors, links, resources, shell
from explorer.captions import item_caption
from explorer.choices import chosen, compose, imagenet_help, sized_base, weights_missing
from explorer.progress import progress_bar

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
version = resources.data_version(corpus)
st.title("Invariance")
st.markdown("This page measures whether a model **recognises the same page in other editions** — reset type, "
            "re-cut, rotated or flipped woodcuts — at each of its layers. Choose how many groups of editions to use "
            "and press *Compute*; then click a square of the matrix, or pick a pair below, to see what the match "
            "rests on.")
with st.expander("Details"):
    st.markdown("Inv = ⟨y(x, x')⟩_local ÷ ⟨y(x, x')⟩_global (Eq. 7 of the paper, Sec. 5.2): the average similarity "
                "y = ⟨φ(x), φ(x')⟩ over pairs of editions of one page (items of one *group*: the paper's nearby "
                "video frames) divided by the average over all pairs of distinct items. A high Inv needs both "
                "invariance (editions score high) and selectivity (other pages score lower).")


def meaning(layer: str, value: float) -> str:
    """What an Inv value says about a layer, in words."""
    if value != value:  # NaN: no pair to average
        return f"Layer {layer}: no value (too few pairs)."
    if value >= 1.1:
        return (f"Layer {layer}, Inv {value:.2f}: editions of one page are on average {value:.1f}× as alike as two "
                "pages taken at random — this layer largely sees through the changes between editions.")
    if value > 0.9:
        return (f"Layer {layer}, Inv ≈ 1 ({value:.2f}): editions of one page are no more alike than any two pages "
                "— this layer is not invariant to resetting, re-cutting or mirroring (or finds all pages alike).")
    return (f"Layer {layer}, Inv {value:.2f}: editions of one page are *less* alike than pages in general — this "
            "layer reacts strongly to what changes between editions.")

with errors.shown("Reading the groups"):
    frame = data.items(root, version)
    frame = frame[frame["group"].notna() & (frame["group"].astype(str) != "")]
    kinds = sorted(frame["kind"].dropna().astype(str).unique())
    controls_row = st.columns(4)
    kind = controls_row[0].selectbox("Kind", ["any", *kinds], key="inv_kind")
    if kind != "any":
        frame = frame[frame["kind"] == kind]
    sizes = frame.groupby("group")["id"].count()
    groups_available = sorted(sizes[sizes >= 2].index.astype(str))
    links.seed("inv_groups", min(8, len(groups_available)) or 1)
    n_groups = controls_row[1].number_input("Groups (editions of a page)", 1, max(1, len(groups_available)),
                                            key="inv_groups",
                                            help="A group is one page in several editions; more groups give a "
                                                 "steadier measure but take longer.")
    layered = [prefix for prefix, family in FAMILIES.items() if family.layers is not None]  # Inv per layer
    try:
        default = chosen(config.default_model())[0]
    except ValueError:  # a custom default model: the first family whose weights are here
        default = None
    if default not in layered:
        default = next((prefix for prefix in layered if not weights_missing(prefix)), layered[0])
    links.seed("inv_family", default)
    family = FAMILIES[controls_row[2].radio("Model", layered, format_func=controls.family_option, key="inv_family")]
    rotation = controls_row[3].checkbox("Rotation/flip-max", key="inv_rot",
                                        help="Compare each page also rotated and flipped, keeping the best "
                                             "match: mirrored woodcuts then count as alike.")
    if weights_missing(family.prefix):
        st.warning(imagenet_help())
        st.stop()
    if len(groups_available) == 0:
        st.info("No group holds two or more items: Inv needs transformed versions of the same page.")
        st.stop()
    chosen_groups = groups_available[: int(n_groups)]
    members = frame[frame["group"].astype(str).isin(chosen_groups)].sort_values(["group", "id"])
    ids = members["id"].astype(int).tolist()
    groups = members["group"].astype(str).tolist()
    base = sized_base(config.default_model(), *config.demo_models())
    keys = {layer: compose(family.prefix, base, layer, rotation) for layer in family.layers()}
    st.caption(f"{len(ids)} items in {len(chosen_groups)} groups; models: {model_label(next(iter(keys.values())))} "
               "… at each layer.")

    if st.button("Compute Inv at every layer", key="inv_go") or st.session_state.get("inv_done") == (ids, keys):
        bar = progress_bar("features …")
        vectors = {layer: data.item_vectors(key, ids, bar.part(number, len(keys)))
                   for number, (layer, key) in enumerate(keys.items())}
        bar.empty()
        st.session_state["inv_done"] = (ids, keys)
        scores = pd.DataFrame({"layer": [str(layer) for layer in keys],
                               "Inv": [invariance(vectors[layer], groups) for layer in keys]})
        bars = px.bar(scores, x="layer", y="Inv", text_auto=".3f", height=320, labels={"layer": "layer"})
        bars.update_xaxes(type="category")
        bars.add_hline(y=1.0, line_dash="dot", annotation_text="no invariance (Inv = 1)")
        st.plotly_chart(bars, key="inv_bars")
        st.dataframe(scores.set_index("layer").T, width="stretch")
        st.markdown("\n".join(f"- {meaning(row.layer, row.Inv)}" for row in scores.itertuples()))
        st.caption("A high Inv can rest on the wrong things (the paper's “Clever Hans” effect: a frame or a "
                   "border shared by the editions); explain the pairs below to check.")

        layer = st.select_slider("Similarity matrix at layer", list(keys), value=list(keys)[-1], key="inv_layer")
        sim = similarity_matrix(vectors[layer])
        captions = {int(row.id): item_caption(row, short=True) for row in members.itertuples(index=False)}
        labels = [captions[i] for i in ids]
        figure = go.Figure(go.Heatmap(z=sim, x=labels, y=labels, colorscale="Viridis",
                                      hovertemplate="%{y} × %{x}<br>y = %{z:.4g}<extra></extra>"))
        mask = local_band_mask(groups)
        start = 0
        for group in dict.fromkeys(groups):  # outline each group's block: the local pairs of Eq. (7)
            size = groups.count(group)
            figure.add_shape(type="rect", x0=start - 0.5, x1=start + size - 0.5, y0=start - 0.5,
                             y1=start + size - 0.5, line={"color": "black", "width": 2})
            start += size
        figure.update_layout(height=560, yaxis={"autorange": "reversed"}, xaxis={"showticklabels": False})
        event = st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="inv_matrix")
        st.caption(f"Brighter squares: pairs the model finds more alike. Black outlines: the editions of one page "
                   f"({int(mask.sum()) // 2} pairs), whose average is the top of Inv. Click a square to explain it.")

        ranked = local_pairs(sim, groups, n=30)
        table = pd.DataFrame([{"item A": ids[i], "item B": ids[j], "group": groups[i], "y": s,
                               "share of local sum": share} for i, j, s, share in ranked])
        st.subheader("Pairs that make up ⟨y⟩_local",
                     help="The pairs of editions that add most to the top of Inv, with their share of it.")
        st.dataframe(table, hide_index=True, height=240)
        clicked = event.selection.points if event and event.selection else []
        if clicked and "x" in clicked[0] and "y" in clicked[0]:
            a, b = labels.index(clicked[0]["y"]), labels.index(clicked[0]["x"])
            links.go("explain", pair=(ids[a], ids[b]), model=keys[layer])
        options = [(ids[i], ids[j]) for i, j, _, _ in ranked]
        if options:
            picked = st.selectbox("Explain a pair", options, key="inv_pair",
                                  format_func=lambda p: f"{captions[p[0]]} ↔ {captions[p[1]]}")
            links.link("Explain this pair", "explain", pair=picked, model=keys[layer])
    else:
        st.info(f"Computes φ of {len(ids)} items at the {len(keys)} layers (stored features are reused).")
