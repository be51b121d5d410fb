"""The linear probe (`--train-layers head`): a frozen pretrained backbone, only the head fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from known_models import photo, write_colour_dataset

from evbattery.training.config import TrainConfig
from evbattery.training.probe import fit_head, fit_linear_probe, fit_temperature


def _features(n: int = 300, d: int = 20, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian blobs in d dimensions, on very different scales per dimension (the standardisation matters)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(0, 2, (k, d))
    scale = np.logspace(-2, 2, d)
    return ((centres[y] + rng.normal(0, 1, (n, d))) * scale).astype(np.float32), y


def test_the_folded_head_gives_the_regressions_own_logits() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _features()
    w, b = fit_head(x, y, 3, c=0.01)
    scaler = StandardScaler().fit(x)
    ref = LogisticRegression(C=0.01, max_iter=5000, class_weight="balanced", random_state=0).fit(scaler.transform(x), y)
    np.testing.assert_allclose(x @ w.T + b, ref.decision_function(scaler.transform(x)), rtol=1e-3, atol=1e-3)
    assert ((x @ w.T + b).argmax(1) == y).mean() > 0.9


def test_two_classes_and_a_class_missing_from_training() -> None:
    x, y = _features(k=2)
    w, b = fit_head(x, y, 3, c=1.0)  # three classes in the model, two in the training split
    logits = x @ w.T + b
    assert w.shape == (3, x.shape[1]) and (logits.argmax(1) == y).mean() > 0.9
    assert (logits.argmax(1) != 2).all()  # the absent class is never predicted
    with pytest.raises(ValueError, match="at least two classes"):
        fit_head(x[y == 0], y[y == 0], 3)


@pytest.mark.parametrize("true_t", [0.5, 2.0, 5.0])
def test_temperature_recovers_the_one_the_labels_were_drawn_with(true_t: float) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (4000, 3))
    p = np.exp(z / true_t)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(z, y) == pytest.approx(true_t, rel=0.1)
    assert fit_temperature(z[:0], y[:0]) == 1.0


@pytest.mark.parametrize("kw, message", [
    ({"input_type": "masks"}, "not the segmenter"),
    ({"pretrained": "none"}, "needs a pretrained backbone"),
    ({"debias": "bg-swap"}, "does not combine"),
    ({"head": "mask_attention"}, "does not combine"),
    ({"probe_c": 0.0}, "probe_c must be > 0"),
    ({"probe_shift_copies": -1}, "probe_shift_copies must be >= 0"),
])
def test_a_probe_refuses_what_it_cannot_do(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(train_layers="head", **kw)


@pytest.mark.slow
def test_train_main_fits_only_the_head_of_the_imagenet_lite0(tmp_path: Path) -> None:
    from evbattery.core.imageio import load_rgb
    from evbattery.inference.predictor import Predictor
    from evbattery.models.backbones import imagenet_state_dict
    from evbattery.models.checkpoint import load_checkpoint
    from evbattery.training.train import main

    data = write_colour_dataset(tmp_path / "data", per_group=8, balanced=False, splits=("train", "val"))
    cfg = TrainConfig(data_dir=str(data), model_dir=str(tmp_path / "model"), runs_dir=str(tmp_path / "runs"),
                      image_size=64, workers=0, tracker="none", progress=False, arch="efficientnet_lite0",
                      pretrained="auto", train_layers="head", epochs=5)
    result = main(cfg)
    assert len(result["history"]) == 1  # one pass, whatever --epochs says
    assert result["val"]["acc"] >= 0.9, result["history"]
    assert result["history"][0]["train/temperature"] > 0
    saved = load_checkpoint(result["checkpoint"])["state_dict"]
    imagenet = imagenet_state_dict("efficientnet_lite0")
    frozen = [k for k in imagenet if not k.startswith("classifier.")]
    assert len(frozen) > 200
    for k in frozen:  # every backbone weight and BatchNorm statistic is ImageNet's, untouched
        assert torch.equal(saved[k], imagenet[k]), k
    assert saved["classifier.weight"].shape == (3, 1280) and saved["classifier.weight"].abs().sum() > 0
    pred = Predictor.from_checkpoint(result["checkpoint"], fast=False)
    files = sorted(data.glob("val/images/*/*"))
    answers = pred.predict([load_rgb(f) for f in files])
    right = sum(a.predicted_class == f.parent.name for a, f in zip(answers, files, strict=True))
    assert right / len(files) >= 0.9
    # the val metrics come from the probe's own val logits (no second pass): the saved model's answers agree
    assert result["val"]["acc"] == pytest.approx(right / len(files))
    assert result["val"]["loss"] == pytest.approx(float(np.mean([-np.log(a.probabilities[f.parent.name])
                                                                   for a, f in zip(answers, files, strict=True)])),
                                                  rel=1e-3)


def test_the_temperature_is_fitted_on_val_and_corrupted_copies_of_it() -> None:
    """A model that reads the mean colour is sure on clean photos; desaturated and hue-shifted copies fool it, so
    the temperature fitted with them is higher (a less confident model) than on the clean val photos alone, and
    it is exactly the one fitted on clean + corrupted logits."""
    from evbattery.data.corruptions import corrupted_copies

    torch.manual_seed(0)
    colour = torch.nn.Conv2d(3, 3, 1)  # the identity: features are the photo's mean colour
    with torch.no_grad():
        colour.weight.copy_(torch.eye(3)[:, :, None, None])
        colour.bias.zero_()
    model = torch.nn.Sequential(colour, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3))
    head = model[3]

    def photos(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = [torch.from_numpy(photo(k % 3, (k + 1) % 3, seed=seed + k)[0]).permute(2, 0, 1) for k in range(n)]
        return torch.stack(x), torch.arange(n) % 3

    (xt, yt), (xv, yv) = photos(60, 0), photos(30, 1000)
    norm = ([0.5] * 3, [0.5] * 3)
    clean = fit_linear_probe(model, head, xt, yt, xv, yv, norm, c=1.0, shift_copies=0, seed=3)
    assert clean["temperature"] == clean["temperature_clean_val"] and clean["acc"] == 1.0
    shifted = fit_linear_probe(model, head, xt, yt, xv, yv, norm, c=1.0, shift_copies=4, seed=3)
    assert shifted["temperature_clean_val"] == pytest.approx(clean["temperature"], rel=1e-4)
    assert shifted["temperature"] > 2 * shifted["temperature_clean_val"], shifted
    copies, source = corrupted_copies(xv, 4, seed=3)
    with torch.no_grad():  # head holds w / T now: T x logits are the unscaled ones
        z = torch.cat([model(normalize_photos(xv, norm)), model(normalize_photos(copies, norm))]) * shifted["temperature"]
    y = np.concatenate([yv.numpy(), yv.numpy()[source.numpy()]])
    assert fit_temperature(z.numpy(), y) == pytest.approx(shifted["temperature"], rel=1e-3)


def normalize_photos(x: torch.Tensor, norm: tuple[list[float], list[float]]) -> torch.Tensor:
    from evbattery.data.transforms import normalize

    return normalize(x, *norm)
