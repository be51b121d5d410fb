"""Corrupted copies of val photos (data/corruptions.py): what a probe's temperature is fitted on besides them."""

from __future__ import annotations

import pytest
import torch
from known_models import photo

from evbattery.data.corruptions import CORRUPTIONS, corrupted_copies


def _photos(n: int = 4, size: int = 48) -> torch.Tensor:
    return torch.stack([torch.from_numpy(photo(k % 3, (k + 1) % 3, size=size, seed=k)[0]).permute(2, 0, 1)
                        for k in range(n)])


def test_copies_keep_shape_dtype_and_say_which_photo_they_came_from() -> None:
    x = _photos(5)
    out, source = corrupted_copies(x, copies=3, seed=1)
    assert out.shape == (15, 3, 48, 48) and out.dtype == torch.uint8
    assert source.tolist() == [0, 1, 2, 3, 4] * 3
    assert all(not torch.equal(out[k], x[source[k]]) for k in range(15))  # every copy is corrupted
    again, _ = corrupted_copies(x, copies=3, seed=1)
    other, _ = corrupted_copies(x, copies=3, seed=2)
    assert torch.equal(out, again) and not torch.equal(out, other)
    empty, none = corrupted_copies(x, copies=0)
    assert empty.shape == (0, 3, 48, 48) and none.numel() == 0


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_changes_the_photo_more_when_stronger(name: str) -> None:
    x = _photos(1, size=64)[0]
    diffs = []
    for strength in (0.3, 1.0):
        y = CORRUPTIONS[name](x, strength, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.dtype == torch.uint8
        diffs.append((y.float() - x.float()).abs().mean().item())
    assert 0 < diffs[0] < diffs[1], diffs


def test_colour_corruptions_move_the_mean_colour_and_blur_keeps_it() -> None:
    """What a colour reader's confidence should be tested against: desaturation and hue change the colour a
    background-colour model reads; blur keeps it."""
    x = _photos(1, size=64)[0]
    mean = x.float().mean((1, 2))
    g = torch.Generator().manual_seed(0)
    for name in ("desaturate", "hue"):
        assert (CORRUPTIONS[name](x, 1.0, g).float().mean((1, 2)) - mean).abs().max() > 40, name
    assert (CORRUPTIONS["blur"](x, 1.0, g).float().mean((1, 2)) - mean).abs().max() < 2


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="uint8"):
        corrupted_copies(torch.zeros(2, 3, 8, 8), copies=1)
