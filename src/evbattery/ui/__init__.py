"""Streamlit UI over the HTTP API (no model is loaded here)."""
