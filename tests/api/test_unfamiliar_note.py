"""The API on a photo unlike the models' training photos: the colour readers (tests/known_models.py) with a novelty
score fitted on photos of the three class colours. A photo in those colours is familiar and the note says
"Models agree"; a pure red one (no training photo is that red) comes back with the photo model in `unfamiliar`,
its novelty above 1 and a note that does not claim agreement, although both models answer, and answer alike."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from helpers import encode, files
from known_models import colour_meta, colour_reader_state_dict, photo

from evbattery.data.cutouts import make_cutout
from evbattery.models.checkpoint import save_checkpoint
from evbattery.models.registry import model_path

pytestmark = pytest.mark.slow  # starts a server


def _features(images: list[np.ndarray]) -> np.ndarray:
    from evbattery.models.backbones import logits_and_features
    from evbattery.models.classifier import new_classifier

    model = new_classifier(3)
    model.load_state_dict(colour_reader_state_dict())
    x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images])
    with torch.no_grad():
        return logits_and_features(model.eval(), "resnet18")(x)[1].numpy()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from server import running_server

    from evbattery.api.app import create_app
    from evbattery.api.config import ApiSettings
    from evbattery.models.novelty import fit_novelty

    model_dir = tmp_path_factory.mktemp("unfamiliar_api")
    pairs = [(bg, cell) for bg in range(3) for cell in range(3)]
    shots = {split: [(photo(bg, cell, seed=first + seed * 9 + i), bg, cell) for seed in range(n)
                     for i, (bg, cell) in enumerate(pairs)] for split, first, n in (("train", 100, 8), ("val", 1000, 4))}
    for name, input_type in (("images", "images"), ("cutouts", "cutouts")):
        def inputs(split: str, input_type: str = input_type) -> list[np.ndarray]:
            return [img if input_type == "images" else make_cutout(img, mask) for (img, mask), _, _ in shots[split]]

        labels = np.array([bg if input_type == "images" else cell for _, bg, cell in shots["train"]])
        score, meta = fit_novelty(_features(inputs("train")), labels, _features(inputs("val")))
        save_checkpoint(model_path(model_dir, name), colour_reader_state_dict(),
                        {**colour_meta(name, input_type), "novelty": meta}, novelty=score.state())
    with (running_server(create_app(ApiSettings(model_dir=model_dir, api_key=None))) as base,
          httpx.Client(base_url=base, timeout=60) as c):
        yield c


def test_a_photo_in_the_training_colours_is_familiar(client: httpx.Client) -> None:
    img, mask = photo(2, 2, seed=0)
    both = client.post("/predict/both", files=files(encode(img), encode(mask))).json()
    assert both["note"] == "Models agree" and both["unfamiliar"] == [] and both["unsure"] == []
    for side in ("image_model", "cutout_model"):
        assert both[side]["predicted_class"] == "prismatic" and both[side]["familiar"] is True
        assert 0 <= both[side]["novelty"] <= 1


def test_a_pure_red_photo_is_unfamiliar_and_agreement_is_not_claimed(client: httpx.Client) -> None:
    """Pure red, where every training photo's red is 210 and its blue and green 30: both models are sure it is
    cylindrical (the channel they read is high), and it is still unlike anything they learned from."""
    img, mask = photo(0, 0, seed=0)
    img[:] = np.array([255, 0, 0], np.uint8)
    both = client.post("/predict/both", files=files(encode(img), encode(mask))).json()
    # the cutout model sees a small red square on black either way: the difference is the whole-photo model's to see
    assert both["unfamiliar"] == ["images"] and both["agree"] is True and both["unsure"] == []
    assert both["image_model"]["predicted_class"] == both["cutout_model"]["predicted_class"] == "cylindrical"
    assert both["image_model"]["familiar"] is False and both["image_model"]["novelty"] > 1
    assert both["note"].startswith("Unfamiliar photo – unlike the photos the models learned from")
    assert "Models agree" not in both["note"]
    one = client.post("/predict/image", files=files(encode(img))).json()
    assert one["familiar"] is False and one["novelty"] == both["image_model"]["novelty"]
    every = client.post("/predict/all", files=files(encode(img), encode(mask))).json()
    assert every["unfamiliar"] == ["images"] and every["note"] == both["note"]


def test_models_says_what_each_score_was_fitted_on(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    for name in ("images", "cutouts"):
        assert models[name]["novelty"]["n_train"] == 72 and models[name]["novelty"]["n_val"] == 36
        assert models[name]["novelty"]["quantile"] == 0.99
