"""The mask-attention head: pooling, the mask target, masks that follow augmentation, training and serving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from toy_data import tiny_config

from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset
from evbattery.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from evbattery.models.classifier import load_classifier, new_classifier
from evbattery.models.mask_attention import MaskAttentionOutputs, MaskAttentionResNet, mask_attention_loss, mask_target


def test_flat_attention_starts_as_average_pooling():
    """With its zero-initialised scoring layer the pool weights every position alike: same logits as
    torchvision's avgpool ResNet-18 with the same weights."""
    torch.manual_seed(0)
    plain = new_classifier(3).eval()
    att = new_classifier(3, "mask_attention").eval()
    missing = att.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["attn.bias", "attn.weight"]
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(att(x), plain(x), atol=1e-5)


def test_attention_pools_where_it_scores_high():
    """A large score on one position makes the pooled feature that position's feature."""
    torch.manual_seed(0)
    att = new_classifier(3, "mask_attention").eval()
    x = torch.randn(1, 3, 64, 64)
    f = att.features(x)                               # (1, 512, 2, 2)
    score = torch.full((1, 1, 2, 2), -30.0)          # every position off ...
    score[..., 1, 0] = 30.0                           # ... but the bottom-left one
    att.attn.forward = lambda _f: score               # type: ignore[method-assign]
    expected = att.fc(f[:, :, 1, 0])
    assert torch.allclose(att(x), expected, atol=1e-4)


def test_train_mode_returns_mask_logits_and_eval_mode_logits():
    model = new_classifier(3, "mask_attention")
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert isinstance(out, MaskAttentionOutputs)
    assert out.logits.shape == (2, 3) and out.mask_logits.shape == (2, 1, 2, 2)
    logits = model.eval()(torch.randn(2, 3, 64, 64))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3)


def test_mask_target_is_the_covered_share_of_each_grid_cell():
    m = torch.zeros(1, 8, 8, dtype=torch.long)
    m[0, :4, :4] = 1          # the top-left quadrant, fully
    m[0, 4:6, 4:8] = 1        # half of the bottom-right quadrant
    t = mask_target(m, (2, 2))
    assert t.shape == (1, 1, 2, 2)
    assert t[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.5]]
    assert torch.equal(mask_target(m * 255, (2, 2)), t)  # 0/255 masks read the same
    # the loss is lowest for scores that agree with the mask
    good = torch.tensor([[[[9.0, -9.0], [-9.0, 0.0]]]])
    assert mask_attention_loss(good, m) < mask_attention_loss(-good, m)


def test_masks_follow_the_geometric_augmentation(toy_dataset):
    """On cutouts (black fill; colour jitter keeps black black) every lit pixel after flips, rotation,
    scale and zoom lies inside the augmented mask, which is still the same size as the cell."""
    torch.manual_seed(0)
    ds = CachedDataset(DatasetLayout(toy_dataset), "train", "cutouts", 64, train=True, zoom_prob=0.5,
                       mask_targets=True)
    for i in range(12):
        img, label, mask = ds[i]
        assert label == ds.labels[i] and mask.shape == (64, 64) and set(mask.unique().tolist()) <= {0, 1}
        lit = img.amax(0) > 40
        grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 5, 1, 2)[0, 0] > 0  # 2-px tolerance
        assert lit.any() and not (lit & ~grown).any(), f"sample {i}: lit pixels outside the mask"
        # the cell is never lost; zoom may enlarge it, affine scale shrinks it by at most ~20 %
        assert mask.sum() >= 0.75 * (ds.masks[i] > 0).sum()


@pytest.mark.slow
def test_training_with_the_head_saves_serves_and_reports_the_mask_loss(toy_dataset, tmp_path):
    from evbattery.inference.predictor import Predictor
    from evbattery.training.train import main

    cfg = tiny_config(toy_dataset, tmp_path, input_type="images", head="mask_attention", epochs=2, image_size=64)
    result = main(cfg)
    h = result["history"]
    assert all("train/mask_loss" in r for r in h) and h[1]["train/mask_loss"] < h[0]["train/mask_loss"]
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["meta"]["head"] == "mask_attention" and "attn.weight" in ckpt["state_dict"]
    model, meta = load_classifier(result["checkpoint"])
    assert isinstance(model, MaskAttentionResNet) and not model.training
    assert meta["config"]["head"] == "mask_attention"
    from evbattery.core.imageio import load_rgb

    photo = DatasetLayout(toy_dataset).require_split("test")[0]
    (out,) = Predictor.from_checkpoint(result["checkpoint"]).predict([load_rgb(photo.path("images"))])
    assert out.predicted_class in meta["classes"] and abs(sum(out.probabilities.values()) - 1) < 1e-4
    assert out.model_used == "images"

    # The checkpoint must say which head its weights need.
    bad = dict(ckpt["meta"], head="avgpool")
    save_checkpoint(tmp_path / "wrong_head.pth", ckpt["state_dict"], bad)
    with pytest.raises(CheckpointError, match="avgpool"):
        load_classifier(tmp_path / "wrong_head.pth")


def test_head_is_refused_for_the_segmenter(tmp_path: Path):
    with pytest.raises(ValueError, match="--head applies to the classifiers"):
        tiny_config(tmp_path, tmp_path, input_type="masks", head="mask_attention")
    with pytest.raises(ValueError, match="head 'gem'"):
        tiny_config(tmp_path, tmp_path, head="gem")
