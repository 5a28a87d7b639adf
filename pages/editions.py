"""Editions: who reprinted what — matching items across the corpus as an edition × edition matrix, a network of
editions on a time axis, the life of one table or woodcut, and exports (:mod:`corpus_index.editions`)."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from bilrp_core.render import PairStyle, heatmap
from corpus_index.csv_export import csv_bytes
from corpus_index.editions import analyse, knn_graph, match_threshold
from corpus_index.editions.exports import edition_network, matrix_table, network_bytes
from corpus_index.editions.groups import shared_relevance
from corpus_index.editions.matrix import book_order, pairs_between
from corpus_index.editions.threshold import current_verdicts
from corpus_index.models import model_label
from explorer import controls, data, errors, links, resources, shell
from explorer.captions import field, item_caption
from explorer.progress import progress_bar

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
version = resources.data_version(corpus)
link = links.read_and_warn()
st.title("Editions")
st.markdown("Which editions print **the same table or woodcut**? Every item is compared with its nearest "
            "neighbours; pairs scoring above the match threshold count as the same item printed twice. Click a cell "
            "of the matrix or a link of the network to see its pairs and open their explanations.")
PAIRS_SHOWN = 12


@st.cache_data(show_spinner=False, max_entries=8)
def editions(root: str, version: tuple, model: str, kind: str | None, k: int, threshold: float | None,
             verdicts: tuple):
    """The editions analysis (kNN graph from its disk cache; ``verdicts`` as for :func:`default_threshold`)."""
    return analyse(resources.corpus(), model, kind=kind, k=k, threshold=threshold)


@st.cache_data(show_spinner=False, max_entries=16)
def default_threshold(root: str, version: tuple, model: str, kind: str | None, verdicts: tuple):
    """The threshold from verdicts or the score distribution (``verdicts``, the current ones, key the cache: a new
    verdict moves the threshold at once)."""
    return match_threshold(resources.corpus(), model, kind)


def book_label(book: str, books) -> str:
    """``B05 · 1520 Venice`` for axes and headings."""
    row = books[books["book"].astype(str) == str(book)].iloc[0]
    when = " ".join(str(field(row, n)) for n in ("year", "place") if field(row, n) is not None)
    return f"{book} · {when}" if when else str(book)


def book_hover(book: str, books) -> str:
    """Title, printer, place and year of a book, for hover texts."""
    row = books[books["book"].astype(str) == str(book)].iloc[0]
    parts = [field(row, n) for n in ("title", "printer", "place", "year")]
    return f"<b>{book}</b> " + " · ".join(str(p) for p in parts if p is not None)


def matrix_figure(books, book_edges) -> go.Figure:
    """The edition × edition matrix as square markers (plotly heatmaps report no clicks to Streamlit)."""
    order = [book_label(b, books) for b in books["book"].astype(str)]
    cells = [(str(e.book1), str(e.book2), int(e.shared)) for e in book_edges.itertuples(index=False)]
    cells += [(b, a, n) for a, b, n in cells]
    figure = go.Figure(go.Scatter(
        x=[book_label(a, books) for a, _, _ in cells], y=[book_label(b, books) for _, b, _ in cells],
        mode="markers", customdata=[[a, b] for a, b, _ in cells], hoverinfo="text",
        hovertext=[f"{book_hover(a, books)}<br>{book_hover(b, books)}<br>{n} matching pairs" for a, b, n in cells],
        marker={"symbol": "square", "size": max(6, min(28, 640 // max(len(order), 1))), "colorscale": "Viridis",
                "color": [n for _, _, n in cells], "showscale": True, "colorbar": {"title": "shared"}}))
    figure.update_xaxes(categoryorder="array", categoryarray=order, tickangle=-60, range=[-0.5, len(order) - 0.5])
    figure.update_yaxes(categoryorder="array", categoryarray=order[::-1], range=[-0.5, len(order) - 0.5])
    figure.update_layout(height=max(420, 22 * len(order) + 160), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def network_positions(books, colour_by: str) -> tuple[dict, dict]:
    """Book -> (year, lane) with one lane per place or printer (books of one year and lane side by side), and
    lane name -> lane number. Books without a year stand right of the latest year."""
    values = books[colour_by].fillna("unknown").astype(str)
    lanes = {value: number for number, value in enumerate(sorted(set(values)))}
    years = books["year"].dropna()
    no_year = int(years.max()) + 5 if len(years) else 0
    position: dict[str, tuple[float, float]] = {}
    for book, value, year in zip(books["book"].astype(str), values, books["year"], strict=True):
        x = no_year if year is None or year is pd.NA or pd.isna(year) else int(year)
        stacked = sum(1 for p in position.values() if p[0] == x and int(p[1]) == lanes[value])
        position[book] = (x, lanes[value] + 0.15 * stacked)
    return position, lanes


def network_figure(books, book_edges, colour_by: str) -> go.Figure:
    """The network of editions: x = year, one colour and lane per place (or printer), line width = shared items;
    a diamond in the middle of each line carries the link's books for clicks."""
    position, lanes = network_positions(books, colour_by)
    figure = go.Figure()
    largest = max([int(n) for n in book_edges["shared"]], default=1)
    edges = [(str(e.book1), str(e.book2), int(e.shared)) for e in book_edges.itertuples(index=False)]
    for a, b, shared in edges:
        figure.add_trace(go.Scatter(x=[position[a][0], position[b][0]], y=[position[a][1], position[b][1]],
                                    mode="lines", hoverinfo="skip", showlegend=False,
                                    line={"width": 1 + 7 * shared / largest, "color": "rgba(90,90,90,0.45)"}))
    figure.add_trace(go.Scatter(
        x=[(position[a][0] + position[b][0]) / 2 for a, b, _ in edges],
        y=[(position[a][1] + position[b][1]) / 2 for a, b, _ in edges], mode="markers", name="links",
        marker={"size": 10, "color": "rgba(60,60,60,0.7)", "symbol": "diamond"},
        customdata=[[a, b] for a, b, _ in edges], hoverinfo="text",
        hovertext=[f"{book_hover(a, books)}<br>{book_hover(b, books)}<br>{n} shared" for a, b, n in edges]))
    values = books[colour_by].fillna("unknown").astype(str)
    for value in lanes:
        members = books.loc[values == value, "book"].astype(str).tolist()
        figure.add_trace(go.Scatter(
            x=[position[b][0] for b in members], y=[position[b][1] for b in members], mode="markers+text",
            text=members, textposition="top center", name=value, marker={"size": 14},
            customdata=[[b] for b in members], hovertext=[book_hover(b, books) for b in members], hoverinfo="text"))
    figure.update_yaxes(tickvals=list(lanes.values()), ticktext=list(lanes), title=colour_by)
    figure.update_xaxes(title="year")
    figure.update_layout(height=max(360, 60 * len(lanes) + 160), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def show_pairs(pairs, model: str) -> None:
    """The matching item pairs of two books, best first, each with both thumbnails and a link to Explain."""
    st.caption(f"{len(pairs)} matching pairs" + (f"; the best {PAIRS_SHOWN} are shown" if len(pairs) > PAIRS_SHOWN
                                                 else "") + ".")
    for row in pairs.head(PAIRS_SHOWN).itertuples(index=False):
        left, right, text = st.columns([1, 1, 3])
        left.image(data.thumbnail(root, int(row.item1)), width="stretch")
        right.image(data.thumbnail(root, int(row.item2)), width="stretch")
        with text:
            st.markdown(f"score **{row.score:.4g}**  \n{item_caption(data.item(int(row.item1)), short=True)}  \n"
                        f"{item_caption(data.item(int(row.item2)), short=True)}")
            links.link("Explain", "explain", pair=(int(row.item1), int(row.item2)), model=model)


def picked(event) -> list:
    """The customdata of the point clicked in a chart (empty when none)."""
    points = event.selection.points if event and event.selection else []
    return list(points[0].get("customdata") or []) if points else []


with st.sidebar:
    st.subheader("Items and model")
    kinds = [str(k) for k in corpus.store.distinct("kind") if k]
    kind = st.selectbox("Kind of item", ["all", *kinds], key="ed_kind", bind="query-params",
                        index=(["all", *kinds].index("table") if "table" in kinds else 0))
    kind = None if kind == "all" else kind
    models = corpus.models()
    preferred = link["model"] or controls.model_for_kind(kind)
    links.seed("ed_model", preferred if preferred in models else (models[0] if models else None), "model")
    model = st.selectbox("Model", models, key="ed_model", format_func=lambda m: f"{model_label(m)}  ({m})",
                         help="Only models with a built index: the graph searches it.") if models else None
    k = st.slider("Neighbours searched per item (k)", 2, 50, 20, key="ed_k", bind="query-params")
if model is None:
    st.info("No model has been indexed yet; build one on the Neighbours page.")
    st.stop()
links.write(model=model)

with errors.shown("Finding matching items"):
    verdicts = tuple(current_verdicts(corpus.store, kind))
    automatic = default_threshold(root, version, model, kind, verdicts)
    with st.sidebar:
        by_hand = st.toggle("Set the threshold by hand", key="ed_manual")
        threshold = st.number_input("Match threshold", value=float(automatic.value), format="%.4g",
                                    key="ed_threshold") if by_hand else None
        st.caption(f"Default: {automatic.meaning}.")
    if st.session_state.get("ed_ready") != (root, version, model, kind, k):  # a new graph shows its progress
        bar = progress_bar("Searching the nearest neighbours of every item …")
        knn_graph(corpus, model, kind=kind, k=k, progress=bar)  # on disk from now on
        bar.empty()
        st.session_state["ed_ready"] = (root, version, model, kind, k)
    result = editions(root, version, model, kind, k, threshold, verdicts)
    books = book_order(result.books)
    with st.sidebar:
        st.subheader("Editions shown")
        places = sorted({str(p) for p in books["place"].dropna()})
        chosen_places = st.multiselect("Places", places, key="ed_places", placeholder="every place")
        years = books["year"].dropna().astype(int)
        span = (int(years.min()), int(years.max())) if len(years) else None
        year_range = st.slider("Years", span[0], span[1], span, key="ed_years") if span and span[0] < span[1] \
            else span
    shown = books
    if chosen_places:
        shown = shown[shown["place"].astype(str).isin(chosen_places)]
    if year_range:
        shown = shown[shown["year"].isna() | shown["year"].between(*year_range)]
    shown_ids = set(shown["book"].astype(str))
    book_edges = result.book_edges[result.book_edges["book1"].astype(str).isin(shown_ids)
                                   & result.book_edges["book2"].astype(str).isin(shown_ids)]
    what = f"{kind} items" if kind else "items"
    st.caption(f"{model_label(model)} · {len(result.graph.ids)} {what}, k = {k} · threshold "
               f"{result.threshold.value:.4g} ({result.threshold.source}) · {len(result.edges)} matching pairs · "
               f"{result.groups['match_group'].nunique()} group(s) · {len(book_edges)} links between {len(shown)} "
               "editions" + ("" if result.graph.exact else " · approximate index: some matches may be missed"))

    matrix_tab, network_tab, group_tab, download_tab = st.tabs(["Matrix", "Network", "Groups", "Downloads"])

    with matrix_tab:
        st.caption("Books ordered by year, then place; a cell counts the pairs of matching items of the two books.")
        if book_edges.empty:
            st.info("No two of these editions share an item at this threshold.")
        else:
            figure = matrix_figure(shown, book_edges)
            cell = picked(st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="ed_matrix"))
            if cell and set(cell) <= shown_ids:  # a selection kept from before the filters changed is dropped
                st.subheader(f"{book_label(cell[0], shown)}  ×  {book_label(cell[1], shown)}")
                show_pairs(pairs_between(result.edges, cell[0], cell[1]), model)

    with network_tab:
        colour_by = st.radio("Colour by", ["place", "printer"], horizontal=True, key="ed_colour")
        st.caption("Editions by year; a line joins two editions sharing items (width: how many). Click the diamond "
                   "in the middle of a line to see its pairs.")
        figure = network_figure(shown, book_edges, colour_by)
        edge = picked(st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="ed_network"))
        if len(edge) == 2 and set(edge) <= shown_ids:  # a click on a book itself (one id) lists nothing
            st.subheader(f"{book_label(edge[0], shown)}  —  {book_label(edge[1], shown)}")
            show_pairs(pairs_between(result.edges, edge[0], edge[1]), model)

    with group_tab:
        groups = result.groups
        if groups.empty:
            st.info("No items match at this threshold: lower it, or search more neighbours.")
        else:
            firsts = groups[groups["position"] == 0].set_index("match_group")
            number = st.selectbox(
                "Group", list(firsts.index), key="ed_group",
                format_func=lambda g: f"{g}: {firsts.loc[g, 'size']} printings, first {item_caption(firsts.loc[g])}")
            members = groups[groups["match_group"] == number].reset_index(drop=True)
            st.markdown("**The life of one item**: every printing, earliest first.")
            for start in range(0, len(members), 6):
                columns = st.columns(6)
                for column, member in zip(columns, members.iloc[start:start + 6].itertuples(index=False), strict=False):
                    column.image(data.thumbnail(root, int(member.id)), width="stretch")
                    column.caption(f"**{field(member, 'year') or 'year unknown'}** · "
                                   f"{item_caption(member, short=True)} · {field(member, 'printer') or ''} "
                                   f"{field(member, 'place') or ''}")
            earliest, others = int(members["id"][0]), [int(i) for i in members["id"][1:]]
            pool = max(data.default_pool(data.input_shape(root, model, i)) for i in [earliest, *others])
            asked = st.session_state.get("ed_explained") == (model, earliest, tuple(others), pool)
            if not asked and st.button(f"Explain every printing against the earliest ({len(others)} pairs)",
                                       key="ed_explain"):
                st.session_state["ed_explained"] = asked = (model, earliest, tuple(others), pool)
            if asked:
                bar = progress_bar("Explaining …")
                explanations = []
                for n, other in enumerate(others):
                    data.check_pair_size(data.input_shape(root, model, earliest), data.input_shape(root, model, other),
                                         pool)
                    explanations.append(data.explain(model, earliest, other, None, pool, bar.part(n, len(others)),
                                                     images=True))
                bar.empty()
                shared = shared_relevance([e.pair for e in explanations])
                st.markdown("**Shared regions** — where the printings agree with the earliest one (red), averaged "
                            "over the pairs; blue where they differ from it.")
                # drawn on the scan: sharper than the model's input, and the same page
                st.image(heatmap(shared, data.image(root, earliest), height=420), width=420)
                for explanation, other in zip(explanations, others, strict=True):
                    style = PairStyle(height=max(256, explanation.image1.height))  # small model inputs stay legible
                    st.image(explanation.draw(top=20, style=style), caption=f"#{earliest} and #{other}: y = "
                             f"{explanation.score:.4g}", width="stretch")
                    links.link("Open in Explain", "explain", pair=(earliest, other), model=model)

    with download_tab:
        st.caption("Every edition and match of this model, kind and threshold (the place and year filters only "
                   "narrow the views).")
        name = f"editions-{model}-{kind or 'all'}"
        network = edition_network(result.book_edges, result.books)
        st.download_button("Matching pairs (CSV)", csv_bytes(result.edges), file_name=f"{name}-edges.csv",
                           mime="text/csv", on_click="ignore", key="ed_dl_edges")
        st.download_button("Groups (CSV)", csv_bytes(result.groups), file_name=f"{name}-groups.csv",
                           mime="text/csv", on_click="ignore", key="ed_dl_groups")
        st.download_button("Edition matrix (CSV)", csv_bytes(matrix_table(result.matrix)),
                           file_name=f"{name}-matrix.csv", mime="text/csv", on_click="ignore", key="ed_dl_matrix")
        st.download_button("Network (GraphML)", network_bytes(network, "graphml"), file_name=f"{name}.graphml",
                           mime="application/xml", on_click="ignore", key="ed_dl_graphml")
        st.download_button("Network (GEXF, for Gephi)", network_bytes(network, "gexf"), file_name=f"{name}.gexf",
                           mime="application/xml", on_click="ignore", key="ed_dl_gexf")
