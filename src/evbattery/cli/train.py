"""`evbattery train`: a classifier (images / cutouts / debiased) or the segmenter. Its options are generated
from TrainConfig's fields (training/config.py), the same source as `python -m evbattery.train`'s flags."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from evbattery.cli.app import app
from evbattery.core.console import fail, print_json
from evbattery.training.config import OptionSpec, option_specs


def _option(s: OptionSpec) -> tuple[Any, Any]:
    """(annotation, typer.Option) for one config field."""
    flags = list(s.flags)
    if s.type is bool:
        long = flags[0]
        flags = [f"{long}/--no-{long[2:]}"]
    annotation = str if s.optional and s.type is str else s.type
    default = s.default
    if s.optional:  # spelled "none" (strings) or 0 (numbers) on the command line
        default = "none" if s.type is str else 0
    return annotation, typer.Option(default, *flags, help=s.help, envvar=s.envvar, show_default=True)


def train_cmd(ctx: typer.Context, config: Path | None = None, **values: Any) -> None:
    """Train a classifier (images / cutouts / debiased images) or the segmenter (masks)."""
    from evbattery.data.layout import DatasetError
    from evbattery.models.checkpoint import CheckpointError
    from evbattery.training.config import resolve_config
    from evbattery.training.train import main

    # Only what the user said (a flag or its environment variable) beats the config file.
    explicit = {k: v for k, v in values.items()
                if getattr(ctx.get_parameter_source(k), "name", "") in ("COMMANDLINE", "ENVIRONMENT")}
    try:
        cfg = resolve_config(explicit, config)
        result = main(cfg)
    except (DatasetError, CheckpointError, ValueError, RuntimeError) as e:
        fail(str(e))
    print_json({k: v for k, v in result.items() if k != "history"})


def _register() -> None:
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
              inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                                default=typer.Option(None, "--config",
                                                     help="configs/*.py file of assignments (flags win over it)."))]
    annotations: dict[str, Any] = {"ctx": typer.Context, "config": Path | None, "return": None}
    for s in option_specs():
        annotation, option = _option(s)
        params.append(inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=option))
        annotations[s.name] = annotation
    train_cmd.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    train_cmd.__annotations__ = annotations
    app.command("train")(train_cmd)


_register()
