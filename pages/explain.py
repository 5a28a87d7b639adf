"""Explain: why two scans are similar — the BiLRP pair explanation as a zoomable view, crops, numbers, exports.

Settings that need new BiLRP factors (γ, patch size) wait for "Apply"; those that only re-draw (pairs drawn,
threshold, sign, digits) act at once. The address bar holds every setting that changes what is seen.
"""

import datetime
import json

import streamlit as st

from bilrp_core.render import heatmap
from corpus_index import annotations, score_context
from corpus_index import figure as publication
from corpus_index.csv_export import csv_bytes
from corpus_index.export import explanation_evidence
from corpus_index.models import UNTRAINED_MARK, is_untrained, load_model, model_label, parse_model_key
from explorer import controls, data, errors, links, pair_view, resources, shell, verdict_form
from explorer.captions import item_caption
from explorer.choices import encode_gamma, parse_gamma
from explorer.progress import progress_bar

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
link = links.read_and_warn()
st.title("Explain a similarity")
st.markdown("This page shows **why the model finds two pages alike**: lines join the places of page A and page B "
            "that make them similar (red) or less similar (blue). Zoom into the pages with the mouse wheel, then "
            "click a line or a row of the table to see the two places enlarged.")

upload_link = st.query_params.get("query") == "upload"
upload = upload_link and "upload_query" in st.session_state
pair = link["pair"]
if upload_link and not upload:  # a shared link to an uploaded scan: the scan was never stored
    st.warning("This link shows a scan that was **uploaded** in another session and compared with a corpus page. "
               "Uploaded scans are not added to the corpus, so it cannot be shown here: upload the scan again on "
               "the Neighbours page and press “Explain” next to the page you want.")
    links.link("Open the Neighbours page", "neighbours", model=link["model"],
               **({"item": pair[1]} if pair else {}))
    st.stop()
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

SIGNS = ["both", "positive", "negative"]
TABLE_COLUMNS = {  # the table in words; the CSV keeps every column (grid cells, boxes on the model input)
    "relevance": st.column_config.NumberColumn(help="How much this pair of squares adds to the similarity "
                                                    "(negative: how much it takes away)", format="%.4g"),
    "share": st.column_config.NumberColumn(help="Its part of the whole similarity", format="percent"),
    "digits A": st.column_config.TextColumn(help="The digits the network found in the square on page A"),
    "digits B": st.column_config.TextColumn(help="The digits the network found in the square on page B"),
    **{f"orig{side}_{c}": st.column_config.NumberColumn(f"{'AB'[side - 1]} {c}", help=f"Box on scan {'AB'[side - 1]}"
                                                        " in its pixels (x0, y0: top left; x1, y1: bottom right)")
       for side in (1, 2) for c in ("x0", "y0", "x1", "y1")},
}


def link_pool(default: int) -> int | None:
    """The patch size the link asks for (``patch``), None when absent; a bad value is reported and ignored."""
    text = st.query_params.get("patch")
    if text is None:
        return None
    if text.isdigit() and int(text) in data.POOLS:
        return int(text)
    st.warning(f"Ignoring part of the link: patch size {text!r} is not one of {list(data.POOLS)} px; using "
               f"{default} px")
    return None


def applied_settings(model: str, pending: tuple[str, int]) -> tuple[str, int]:
    """The γ (as link text) and patch size the explanation is computed with: ``pending`` (the controls) once
    "Apply" is pressed — or at once on a new pair, model or link; otherwise what was applied before."""
    state = st.session_state.get("_ex_applied")
    context = (pair, model, upload)
    url = (st.query_params.get("gamma"), st.query_params.get("patch"))
    if state is None or state["context"] != context or state["url"] != url:
        state = {"context": context, "value": pending}
    st.session_state["_ex_applied"] = state
    if pending != state["value"]:
        st.caption("γ or the patch size changed: press **Apply** to compute the explanation with them.")
        st.button("Apply", key="ex_apply", type="primary", on_click=state.update, kwargs={"value": pending},
                  help="Compute the explanation with the new γ and patch size (can take a while when the pages' "
                       "factors are not cached yet).")  # applied before the next run draws anything
    return state["value"]


def remember_url() -> None:
    """Note the link's γ and patch size as written by this page, so that only a new link re-applies them."""
    st.session_state["_ex_applied"]["url"] = (st.query_params.get("gamma"), st.query_params.get("patch"))


@st.cache_data(show_spinner="Finding the digits on the scans …", max_entries=64)
def digits_of(root: str, model_key: str, item_id: int | None, upload_bytes: bytes | None = None) -> list:
    """The digits the bigram network's detector finds on an item (or the uploaded scan), as boxes on the scan."""
    image = data.load_upload(upload_bytes) if item_id is None else data.image(root, item_id)
    return pair_view.detected_digits(load_model(model_key), image)


@st.fragment
def explanation_view() -> None:
    """Controls and the explanation: changing them reruns only this part of the page."""
    latest = links.read()
    panel, view = st.columns([1, 3], gap="large")
    with panel:
        model = controls.model_picker("ex", latest["model"], with_h=True, kind=items[1].get("kind"))
        if model is None:
            return
        default = data.default_pool(model)
        asked = link_pool(default)
        if st.session_state.get("_ex_pool_model") != model:  # a new model: its own default patch size
            fresh = "_ex_pool_model" not in st.session_state
            st.session_state["ex_pool"] = asked if fresh and asked else default
            st.session_state["_ex_pool_model"] = model
        links.seed("ex_pool", asked, "patch")  # a new link in this session
        with st.container(border=True):
            gamma = controls.gamma_controls("ex", model, latest["gamma"])
            pool = st.select_slider(
                "Patch size (pixels)", data.POOLS, key="ex_pool",
                help="The explanation links small squares of the two pages; this is their side, in pixels of the "
                     f"page as the model sees it ({default} px by default for this model, the same for every pair; "
                     "for the bigram network less than a table row). Smaller squares point more precisely but "
                     "take longer to compute.")
            gamma_text, pool = applied_settings(model, (encode_gamma(gamma), pool))
        top = st.slider("Patch pairs drawn", 1, 200, 30, key="ex_top", bind="query-params",
                        help="How many of the strongest links between the two pages are drawn and listed.")
        threshold = st.slider("Only pairs above this fraction of the strongest (0 = off)", 0.0, 1.0, 0.0, step=0.05,
                              key="ex_threshold", bind="query-params",
                              help="Hide links weaker than this share of the strongest link.")
        sign = st.radio("Relevance shown", SIGNS, horizontal=True,
                        key="ex_sign", bind="query-params",
                        help="Positive (red links): places that make the pages alike; negative (blue): places that "
                             "make them less alike.")
        digits_shown = False
        if parse_model_key(model).family == "bigram":
            digits_shown = st.checkbox("Show the detected digits", key="ex_digits", bind="query-params",
                                       help="Green boxes: the digits the bigram network recognised, with their "
                                            "values; the table then names the digits in each linked square.")
    links.write(model=model, gamma=parse_gamma(gamma_text), patch=pool)
    remember_url()
    with view, errors.shown("Explaining the pair"):
        explanation, originals, pool, slot = explained(model, gamma_text, pool, default)
        digits = ()
        if digits_shown:
            upload_bytes = st.session_state["upload_query"] if upload else None
            digits = (digits_of(root, model, None if upload else pair[0], upload_bytes),
                      digits_of(root, model, pair[1]))
        with slot.container():
            show(explanation, originals, model, gamma_text, pool, top, threshold, sign, digits)


def explained(model: str, gamma_text: str, pool: int, default: int):
    """The explanation (computing missing factors with progress), the two scans, the patch size used, and the
    place (an ``st.empty``) to draw the explanation in."""
    gamma = parse_gamma(gamma_text)
    shapes = [data.input_shape(root, model, pair[1])] * 2 if upload else [
        data.input_shape(root, model, pair[0]), data.input_shape(root, model, pair[1])]
    if pool != default:  # the user's choice: say why it cannot be shown
        data.check_pair_size(*shapes, pool, model)
    elif (fits := data.fitting_pool(shapes, model, pool)) != pool:
        st.info(f"These pages are large: {pool}-px squares would give too many pairs to show, so the explanation "
                f"uses {fits}-px squares.")
        pool = fits
    slot = st.empty()  # where the explanation is drawn (in its place, the progress while factors are computed)
    if upload:
        slot.info("Computing the explanation of the uploaded scan …", icon=":material/hourglass_top:")
        explanation = data.explain_upload(root, model, st.session_state["upload_query"], pair[1], gamma_text, pool)
        return explanation, [data.load_upload(st.session_state["upload_query"]), data.image(root, pair[1])], pool, slot
    missing = data.missing_factors(model, pair, gamma, pool)
    if missing:
        # One element in the explanation's place: the previous pair's view, table and forms leave the page at
        # once instead of staying (faded) until the run ends — a software-rendered browser redraws them on every
        # frame, taking the CPU the factors need.
        bar = progress_bar(f"Computing BiLRP factors of {len(missing)} page(s) for {model_label(model)} (first "
                           "time for this γ and patch size; cached afterwards) …", slot,
                           label=f"Computing BiLRP factors for {model_label(model)} (cached afterwards)")
        data.compute_factors(model, pair, gamma, pool, bar)
    explanation = data.explain(model, pair[0], pair[1], gamma, pool)
    return explanation, [data.image(root, pair[0]), data.image(root, pair[1])], pool, slot


def numbers(explanation) -> None:
    """The score and how much of it the explanation accounts for, in words; the formulas behind "Details"."""
    columns = st.columns(3)
    columns[0].metric("Similarity", f"{explanation.score:.5g}",
                      help="How alike the model finds the two pages: the larger, the more alike. Compare it with "
                           "other pairs under the same model, not across models.")
    columns[1].metric("Σ of the explanation", f"{explanation.total:.5g}",
                      help="The links of all pairs of squares added up (red ones count plus, blue ones minus).")
    share = explanation.total / explanation.score if explanation.score else float("nan")
    columns[2].metric("Share explained", f"{share:.1%}",
                      help="How much of the similarity the links account for: 100 % means nothing is left out.")
    with st.expander("Details"):
        st.markdown(
            "Similarity y = ⟨φ(x), φ(x')⟩, the dot product of the two pages' feature vectors φ. BiLRP (Eberle "
            "et al., TPAMI 2022) splits y over pairs of patches: R = Σ_m R_m(x) ⊗ R_m(x'), where R_m is the LRP "
            "explanation of feature m; for bias-free ReLU networks Σ R = y (Proposition 1). Relevance is summed "
            "over patches of the chosen size; the LRP-γ rule (γ ≥ 0) favours positive contributions (Sec. 3).")


def show(explanation, originals, model, gamma_text, pool, top, threshold, sign, digits) -> None:
    """Numbers, the zoomable pair view, the chosen pair's crops, the table, the heatmaps and the downloads."""
    untrained = is_untrained(model)
    if untrained:
        st.warning(f"**{UNTRAINED_MARK.capitalize()}.** This network has random weights: its similarities and "
                 "explanations show what the architecture alone does. Install the ImageNet weights or use the "
                 "bigram network for research.")
    numbers(explanation)
    kind = items[1].get("kind")
    share = score_context.percentile_text(score_context.percentile(corpus, model, explanation.score, kind), kind)
    if share:
        st.caption(f"In this corpus, under this model, this score is {share}.")
    view_table = explanation.table(n=top, sign=sign, threshold=threshold or None, offsets=((0, 0), (0, 0)))
    table = explanation.table(n=top, sign=sign, threshold=threshold or None)  # a region's boxes on its page
    if digits:
        named = pair_view.digits_in_patches(view_table, digits)
        for frame in (view_table, table):
            frame.insert(3, "digits A", named[0])
            frame.insert(4, "digits B", named[1])
    figure = pair_view.pair_figure(originals, view_table, digits, mark=UNTRAINED_MARK if untrained else None)
    event = st.plotly_chart(figure, key="ex_view", on_select="rerun", selection_mode="points",
                            config={"scrollZoom": True, "displaylogo": False})
    st.caption(f"{model_label(model)}, γ {gamma_text}, {pool}-px squares: the {len(view_table)} strongest links"
               f"{'' if not threshold else f' above {threshold:.0%} of the strongest'}. Scroll to zoom, drag to "
               "pan or to zoom into a box, double-click to see both pages whole.")
    crops = st.container()  # filled once the table below says which pair is chosen
    st.subheader("Strongest patch pairs",
                 help="One row per link, strongest first; share: its part of the similarity. Boxes are in pixels "
                      "of the scans. Choose a row to see its two squares enlarged above.")
    shown = [c for c in ("rank", "relevance", "share", "digits A", "digits B", "orig1_x0", "orig1_y0", "orig1_x1",
                         "orig1_y1", "orig2_x0", "orig2_y0", "orig2_x1", "orig2_y1") if c in table]
    picked = st.dataframe(table, hide_index=True, height=280, key="ex_pairs", on_select="rerun",
                          selection_mode="single-row", column_order=shown, column_config=TABLE_COLUMNS)
    rank = chosen(pair_view.chosen_rank(figure, event.selection.points if event else []),
                  picked.selection.rows if picked else [], view_table)
    if rank is not None:
        row = view_table[view_table["rank"] == rank].iloc[0].to_dict()
        left, right = pair_view.patch_crops(originals, row)
        crops.markdown(f"**Pair {rank}** (relevance {row['relevance']:.3g}): the two squares with a margin, "
                       "cut from the scans")
        sides = crops.columns(2)
        sides[0].image(data.jpeg_bytes(left), caption=f"A, at ({row['orig1_x0']:.0f}, {row['orig1_y0']:.0f})")
        sides[1].image(data.jpeg_bytes(right), caption=f"B, at ({row['orig2_x0']:.0f}, {row['orig2_y0']:.0f})")
    heatmaps = st.expander("Where each page's similarity lies (heatmaps)", key="ex_heatmaps", on_change="rerun")
    if heatmaps.open:  # drawn only when opened: the page re-draws without them
        maps = heatmaps.columns(2)
        for axis, column in enumerate(maps):
            column.image(data.jpeg_bytes(heatmap(explanation.pair, originals[axis], axis=axis, height=360)),
                         width="stretch", caption=f"{'AB'[axis]}: how much each place adds to the similarity")
    exports(explanation, originals, model, gamma_text, pool, view_table, table, untrained)
    if not upload:
        links.link("Compare models on this pair", "compare", pair=pair, model=model)
        verdict_form.verdict_form(pair, model, explanation, pool, table)  # a historian's verdict on the pair


def chosen(from_view: int | None, rows: list, view_table) -> int | None:
    """The pair whose crops are shown: the latest click on a link or choice of a row, else the strongest."""
    memory = st.session_state.setdefault("_ex_chosen", {"view": None, "rows": [], "rank": None})
    if from_view is not None and from_view != memory["view"]:
        memory["rank"] = from_view
    elif rows and rows != memory["rows"] and rows[0] < len(view_table):
        memory["rank"] = int(view_table["rank"].iloc[rows[0]])
    memory["view"], memory["rows"] = from_view, list(rows)
    ranks = set(view_table["rank"])
    if memory["rank"] not in ranks:
        memory["rank"] = min(ranks) if ranks else None
    return memory["rank"]


def exports(explanation, originals, model, gamma_text, pool, view_table, table, untrained) -> None:
    """The publication figure (PNG, PDF, SVG), the table (CSV) and the Web Annotation, each marked if untrained."""
    if table.empty:
        st.info("No patch pair passes these settings: lower the threshold or show both signs to export.")
        return
    upload_bytes = st.session_state["upload_query"] if upload else None

    def annotation() -> bytes:  # one annotation per patch pair, with citable targets; made when downloaded
        made = annotations.each_annotation(
            annotations.explanation_annotations(corpus.store, items, table, model, explanation.gamma,
                                                explanation.score, explanation.total, pool, upload=upload_bytes),
            lambda one: publication.mark_annotation(one, untrained))
        return json.dumps(made, indent=1).encode()

    def evidence() -> bytes:  # both items' metadata and the parameters with every row; made when downloaded
        rows = explanation_evidence(corpus.store, table, None if upload else pair[0], pair[1], model, gamma_text,
                                    pool, explanation.score)
        return csv_bytes(publication.mark_table(rows, untrained))

    caption = publication.caption_text(items, names, model_label(model), gamma_text, explanation.score,
                                       datetime.date.today(), untrained)

    def figure(fmt: str) -> bytes:
        return publication.figure_bytes(publication.pair_figure(originals, view_table, caption, untrained), fmt,
                                        caption)

    stem = f"bilrp-{model}-{pair[0] if not upload else 'upload'}-{pair[1]}"
    downloads = st.columns(5)
    downloads[0].download_button("Picture (PNG)", lambda: figure("png"), f"{stem}.png", "image/png",
                                 on_click="ignore", key="ex_png", help="Both scans at full resolution with the "
                                 "links and a caption naming the pages, the model, γ, the score and the date.")
    downloads[1].download_button("Figure (PDF)", lambda: figure("pdf"), f"{stem}.pdf", "application/pdf",
                                 on_click="ignore", key="ex_pdf")
    downloads[2].download_button("Figure (SVG)", lambda: figure("svg"), f"{stem}.svg", "image/svg+xml",
                                 on_click="ignore", key="ex_svg")
    downloads[3].download_button("Top patch pairs (CSV)", evidence, f"{stem}.csv", "text/csv", on_click="ignore",
                                 key="ex_csv")
    downloads[4].download_button("Web Annotation (JSON-LD)", annotation, f"{stem}.jsonld", "application/ld+json",
                                 on_click="ignore", key="ex_anno")


explanation_view()
