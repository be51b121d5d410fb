"""The Streamlit router: one st.navigation over the pages in app_pages/, plus the cross-page API URL.

Run with `evbattery ui` or `streamlit run streamlit_app.py`. The UI loads no model; it calls the API.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from evbattery.core.config import get_settings

PAGES_DIR = Path(__file__).parent / "app_pages"


def main() -> None:
    """Build the frame (title, sidebar API URL) and run the selected page."""
    st.set_page_config(page_title="evbattery", page_icon=":material/battery_full:", layout="wide")
    # The API URL is a cross-page control, so it lives here (a widget's identity depends on its page).
    if "api_url" not in st.session_state:
        st.session_state["api_url"] = get_settings().api_url
    st.sidebar.text_input("API URL", key="api_url",
                          help="Where the evbattery API runs (EVBATTERY_API_URL).")
    st.sidebar.caption("Classifies Li-ion cells (cylindrical / pouch / prismatic) and shows how much "
                       "each model leans on the background.")
    page = st.navigation([
        st.Page(PAGES_DIR / "classify.py", title="Classify", icon=":material/search:", default=True),
        st.Page(PAGES_DIR / "bias_report.py", title="Bias report", icon=":material/bar_chart:"),
        st.Page(PAGES_DIR / "models.py", title="Models", icon=":material/memory:"),
    ])
    page.run()


if __name__ == "__main__":  # `streamlit run src/evbattery/ui/app.py` (what `evbattery ui` does)
    main()
