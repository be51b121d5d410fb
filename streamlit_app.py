"""Thin entry point kept for the seed's `streamlit run streamlit_app.py`; the app lives in evbattery.ui."""

from evbattery.ui.app import main

main()
