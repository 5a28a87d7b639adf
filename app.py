"""Sphaera similarity explorer — Streamlit entry point (routes the pages with st.navigation)."""

import streamlit as st

st.set_page_config(page_title="Sphaera similarity explorer", layout="wide")
pages = [st.Page("pages/corpus.py", title="Corpus", default=True)]
st.navigation(pages).run()
