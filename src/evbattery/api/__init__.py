"""HTTP API (FastAPI): `python -m uvicorn evbattery.api.app:app`."""
