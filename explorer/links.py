"""Deep links: the URL carries the page (its path), the query item, the pair, the model and γ.

``?item=12&model=vgg16-L17-h100-seed0&gamma=0.25`` on ``/neighbours``, ``?pair=12-34&model=…`` on ``/explain``.
Pages read the link with :func:`read` and seed their widgets from it (:func:`seed`), then write the widgets'
values back with :func:`write`, so the address bar always reproduces what is on screen. A widget that stands for
one value of its own (k, the patch pairs drawn …) is bound to the URL by Streamlit instead (``bind="query-params"``,
its key as the parameter). Links to other pages are ``st.page_link`` elements (:func:`link`) or, after an
action, ``st.switch_page`` (:func:`go`), on the page objects of :func:`explorer.shell.page`, carrying the deep link
as query parameters.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer import config, resources, shell
from explorer.choices import encode_gamma, offered, offered_text, parse_gamma, valid_key

MAX_ID = 2**53 - 1  # the largest whole number a number widget holds exactly (and far above any item id)


def item_id(text: Any) -> int | None:
    """The item id ``text`` stands for, or None when it can name no item (not a whole number, negative, or too
    large — ``99999999999999999999999`` would overflow the database's 64-bit integers)."""
    try:
        number = int(str(text).strip())
    except ValueError:
        return None
    return number if 0 <= number <= MAX_ID else None


def _pair_parts(text: str | None) -> tuple[str, str] | None:
    first, dash, second = (text or "").strip().partition("-")
    return (first, second) if dash and first.isdigit() and second.isdigit() else None


def parse_pair(text: str | None) -> tuple[int, int] | None:
    """``"12-34"`` -> (12, 34); None when missing, malformed or naming an impossible id."""
    parts = _pair_parts(text)
    if parts is None:
        return None
    a, b = item_id(parts[0]), item_id(parts[1])
    return (a, b) if a is not None and b is not None else None


def known_models() -> tuple[str, ...]:
    """Model keys the explorer knows: the configured ones and those with a built index."""
    try:
        built = tuple(resources.corpus().models())
    except Exception:  # no corpus open yet: the configured models still count
        built = ()
    return (config.default_model(), *config.demo_models(), *built)


def _model(text: str | None, problems: list[str]) -> str | None:
    """The canonical model key of the link, or None (with the reason in ``problems``) when it is malformed or
    not offered: checked before any page builds a model from it."""
    if not text:
        return None
    key, known = valid_key(text), known_models()
    if key is None or not offered(key, known):
        problems.append(f"model {text!r} is not one this explorer offers; it offers {offered_text(known)}")
        return None
    return key


def _references(ids: list[int]) -> dict[int, str]:
    """Short content references (``corpus_index.item_refs``) of these items; empty when no corpus is open."""
    from corpus_index.item_refs import references

    try:
        return references(resources.corpus().store, ids)
    except Exception:  # no corpus yet (a link drawn before the shell opened it): links without references
        return {}


def _with_references(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` plus ``h``, the items' content references beside their ids (``h=3f2a9c0d1e2b``, a pair's
    ``h=<ref1>-<ref2>``), so a link still finds its items after a re-ingest gives them other ids."""
    ids = values.get("pair") if "pair" in values else ([values["item"]] if values.get("item") is not None else None)
    if "pair" not in values and "item" not in values:
        return values
    refs = _references([int(i) for i in ids]) if ids else {}
    text = "-".join(refs.get(int(i), "") for i in ids) if ids and all(int(i) in refs for i in ids) else None
    return {**values, "h": text}


def _resolve_references(link: dict[str, Any], text: str | None) -> None:
    """Where the link's ``h`` names other content than its ids (or they name nothing), take the items ``h`` names."""
    from corpus_index.item_refs import resolve

    refs = (text or "").split("-")
    ids = list(link["pair"]) if link["pair"] else [link["item"]]
    if not text or len(refs) != len(ids) or (len(ids) == 1 and not link["item"] and not link["unknown_item"]):
        return
    current = _references([i for i in ids if i is not None])
    try:
        resolved = [i if i is not None and current.get(i) == ref else resolve(resources.corpus().store, ref)
                    for i, ref in zip(ids, refs, strict=True)]
    except Exception:  # no corpus open: the ids stand as they are
        return
    if any(r is None for r in resolved):
        return
    link.update({"pair": tuple(resolved)} if link["pair"] else {"item": resolved[0]})
    link["unknown_item"] = None
    write(**({"pair": link["pair"]} if link["pair"] else {"item": link["item"]}))  # the address bar follows


def read() -> dict[str, Any]:
    """The link's values, validated: item (int), pair ((int, int)), model (canonical key), gamma, problems.

    ``unknown_item`` holds an id from the link that can name no item (``-1``, ``abc``, a number too large for
    the database); pages report it as "no item with id …", like any other id the corpus does not hold.
    """
    params = st.query_params
    problems: list[str] = []
    link: dict[str, Any] = {"item": None, "pair": parse_pair(params.get("pair")), "unknown_item": None,
                            "model": _model(params.get("model"), problems), "gamma": None, "problems": problems}
    if params.get("item"):
        link["item"] = item_id(params.get("item"))
        link["unknown_item"] = None if link["item"] is not None else params.get("item")
    parts = _pair_parts(params.get("pair"))
    if params.get("pair") and parts is None:
        problems.append(f"pair {params.get('pair')!r} is not of the form 12-34")
    elif parts is not None and link["pair"] is None:
        link["unknown_item"] = next(p for p in parts if item_id(p) is None)
    _resolve_references(link, params.get("h"))
    try:
        link["gamma"] = parse_gamma(params.get("gamma"))
    except ValueError as error:
        problems.append(str(error))
    return link


def pair_or_stop(link: dict[str, Any], hint: str) -> tuple[int, int]:
    """The link's pair; otherwise a "no such item" error (an impossible id) or ``hint``, and the page stops."""
    if link["pair"] is None and link["unknown_item"] is not None:
        from explorer import data, errors  # here, not at the top: explorer.data imports this module

        errors.report("Reading the pair", data.no_such_item(link["unknown_item"]))
        st.stop()
    if link["pair"] is None:
        st.info(hint)
        st.stop()
    return link["pair"]


def read_and_warn() -> dict[str, Any]:
    """:func:`read`, showing a warning for each part of the link that had to be ignored."""
    link = read()
    for problem in link["problems"]:
        st.warning(f"Ignoring part of the link: {problem}")
    return link


def _encoded(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if name == "gamma":
        return encode_gamma(value)
    if name == "pair":
        return f"{int(value[0])}-{int(value[1])}"
    return str(value)


def write(**values: Any) -> None:
    """Put values in the URL (None removes a key); γ and pairs are encoded as :func:`read` expects.

    What was written is remembered, so that :func:`seed` can tell the page's own echo from a new link.
    """
    written = st.session_state.setdefault("_link_written", {})
    for name, value in _with_references(values).items():
        text = _encoded(name, value)
        written[name] = text
        if text is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != text:
            st.query_params[name] = text


def seed(widget_key: str, value: Any, *params: str) -> None:
    """Give a widget its starting value: from the link when the link changed, else only when it has none.

    Parameters
    ----------
    widget_key : str
        The widget's key.
    value : any
        The value the link (or the default) asks for; None leaves the widget as it is.
    *params : str
        The query parameters ``value`` was derived from. The widget is reset when one of them changed since
        the last run — unless the change is the page's own :func:`write` of the widget's value (its echo), so a
        widget the user just moved is never pulled back.
    """
    marker = f"_link_{widget_key}"
    source = tuple(st.query_params.get(p) for p in params)
    written = st.session_state.get("_link_written", {})
    echo = bool(params) and all(p in written and written[p] == st.query_params.get(p) for p in params)
    changed = marker in st.session_state and st.session_state[marker] != source and not echo
    if value is not None and (widget_key not in st.session_state or changed):
        st.session_state[widget_key] = value
    st.session_state[marker] = source


def query(**params: Any) -> dict[str, str]:
    """The query parameters of a deep link, encoded as :func:`read` expects (None values left out)."""
    return {name: _encoded(name, value) for name, value in _with_references(params).items() if value is not None}


def go(page: str, **params: Any) -> None:
    """Open another page with a deep link (stops this run): for links that follow an action (a click on a chart,
    an upload handed over); links known when the page is drawn are :func:`link`."""
    st.switch_page(shell.page(page), query_params=query(**params))


def link(label: str, page: str, container=None, help: str | None = None, **params: Any) -> None:
    """A link (``st.page_link``) that opens ``page`` with a deep link; the browser follows it at once."""
    (container or st).page_link(shell.page(page), label=label, help=help, query_params=query(**params))
