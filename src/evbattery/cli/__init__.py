"""The `evbattery` command: one module per command group, each calling the layers' functions. No layer imports
this package; it sits on top, beside the UI."""

from evbattery.cli import bench, bias, data, demo, evaluate, export, predict, serve, synth, train  # noqa: F401
from evbattery.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
