"""The training options have one source (TrainConfig's fields) and one precedence rule for both command lines:
defaults < config file < flags (or their environment variables)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from evbattery.training.config import (
    TrainConfig,
    config_from_args,
    field_names,
    get_args_parser,
    load_config_file,
    option_specs,
    resolve_config,
)


def test_every_field_is_an_option_of_both_command_lines():
    from evbattery.cli.app import app

    cmd = next(c for c in app.registered_commands if c.name == "train")
    import inspect

    cli_params = set(inspect.signature(cmd.callback).parameters) - {"ctx", "config"}
    argparse_dests = {a.dest for a in get_args_parser()._actions} - {"help", "config"}
    assert cli_params == argparse_dests == set(field_names())
    assert all(s.help for s in option_specs())  # every option explains itself


def test_argparse_precedence_defaults_then_file_then_flags(tmp_path, monkeypatch):
    monkeypatch.delenv("INPUT_TYPE", raising=False)
    f = tmp_path / "c.py"
    f.write_text("image_size = 96\nepochs = 3\ndebias = 'bg-swap'\n")
    cfg = config_from_args(get_args_parser().parse_args(["--config", str(f), "--epochs", "5"]))
    assert (cfg.image_size, cfg.epochs, cfg.model_name, cfg.lr) == (96, 5, "images_debiased", TrainConfig().lr)
    # --size is an alias of --image-size and a flag beats the file
    assert config_from_args(get_args_parser().parse_args(["--config", str(f), "--size", "64"])).image_size == 64
    # "none" turns an optional field off
    assert config_from_args(get_args_parser().parse_args(["--config", str(f), "--debias", "none"])).debias is None


def test_environment_variables_count_as_flags(tmp_path, monkeypatch):
    f = tmp_path / "c.py"
    f.write_text("input_type = 'images'\ndata_dir = 'from_file'\n")
    monkeypatch.setenv("INPUT_TYPE", "cutouts")
    monkeypatch.setenv("EVBATTERY_DATA_DIR", str(tmp_path / "from_env"))
    cfg = config_from_args(get_args_parser().parse_args(["--config", str(f)]))
    assert (cfg.input_type, cfg.data_dir) == ("cutouts", str(tmp_path / "from_env"))


def test_typer_command_uses_the_same_rule(tmp_path, monkeypatch):
    """`evbattery train`: the file beats defaults, a flag beats the file (checked through the error the run
    raises on a missing dataset, which names the data folder the config resolved to)."""
    from evbattery.cli.app import app

    monkeypatch.delenv("EVBATTERY_DATA_DIR", raising=False)
    f = tmp_path / "c.py"
    f.write_text(f"data_dir = {str(tmp_path / 'from_file')!r}\n")
    res = CliRunner().invoke(app, ["train", "--config", str(f), "--tracker", "none"])
    assert res.exit_code == 1 and "from_file" in res.output
    res = CliRunner().invoke(app, ["train", "--config", str(f), "--data", str(tmp_path / "from_flag"),
                                   "--tracker", "none"])
    assert res.exit_code == 1 and "from_flag" in res.output and "from_file" not in res.output


def test_config_file_errors_name_the_setting(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("epoch = 3\n")
    with pytest.raises(ValueError, match="unknown setting 'epoch'"):
        load_config_file(f)
    f.write_text("epochs = 'three'\n")
    with pytest.raises(ValueError, match="epochs"):
        load_config_file(f)
    with pytest.raises(ValueError, match="arch 'vgg'; expected one of resnet18, efficientnet_lite0, efficientnet_lite2"):
        resolve_config({"arch": "vgg"})
    for profile in Path(__file__).parents[2].glob("configs/*.py"):
        load_config_file(profile)  # the shipped profiles are valid
