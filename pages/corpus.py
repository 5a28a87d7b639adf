"""Corpus page (placeholder until the explorer issue lands)."""

import streamlit as st

st.title("Sphaera similarity explorer")
st.info("The explorer is being built: the BiLRP method (bilrp_core) is in place; the corpus index and the pages "
        "for browsing, neighbours and explanations come next.")
