"""Seed-compatible entry: `INPUT_TYPE=cutouts python -m evbattery.train [--epochs N ...]`, and the
torchrun entry: `torchrun --nproc_per_node N -m evbattery.train --input-type images ...`."""

from __future__ import annotations

import sys


def run(argv: list[str] | None = None) -> int:
    """Parse flags, train, print the result as JSON; bad data or checkpoints exit 2 with one clear line."""
    import json

    from evbattery.data.layout import DatasetError
    from evbattery.models.checkpoint import CheckpointError
    from evbattery.training.config import config_from_args, get_args_parser
    from evbattery.training.train import main

    args = get_args_parser().parse_args(argv)
    try:
        result = main(config_from_args(args))
    except (DatasetError, CheckpointError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(run())
