"""Seed-compatible entry: `INPUT_TYPE=cutouts python -m evbattery.evaluate [--split test] [--cross]`."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from evbattery.cli.app import app

    sys.exit(app(["evaluate", *sys.argv[1:]], prog_name="python -m evbattery.evaluate"))
