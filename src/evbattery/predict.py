"""Seed form: `INPUT_TYPE=images|cutouts python -m evbattery.predict PATH...` (= `evbattery predict`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run `evbattery predict` with the given arguments (INPUT_TYPE picks the model)."""
    from evbattery.cli.app import app

    app(["predict", *sys.argv[1:]], prog_name="python -m evbattery.predict")


if __name__ == "__main__":
    main()
