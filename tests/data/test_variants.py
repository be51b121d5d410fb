"""Exact pixels of every Backgrounds-Challenge variant on tiny hand-made images."""

from __future__ import annotations

import numpy as np
import pytest

from evbattery.core.config import MASK_THRESHOLD
from evbattery.data.variants import bounding_box, cell, mixed, no_fg, only_bg_t, only_fg, resize_to
from evbattery.evaluation.bias import background_owners, build_variant, choose_partners


def scene(seed: int = 0, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A random-texture background with a red plus-shaped cell (so the box holds background pixels too)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 200, (size, size, 3)).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[3:8, 5] = 255
    mask[5, 3:8] = 255
    img[mask > 0] = (250, 10, 10)
    return img, mask


def test_only_fg_keeps_exactly_the_mask_pixels() -> None:
    img, mask = scene()
    out = only_fg(img, mask)
    inside = mask > 0
    assert np.array_equal(out[inside], img[inside])
    assert (out[~inside] == 0).all()


def test_no_fg_zeroes_exactly_the_mask_pixels() -> None:
    img, mask = scene()
    out = no_fg(img, mask)
    inside = mask > 0
    assert (out[inside] == 0).all()
    assert np.array_equal(out[~inside], img[~inside])


def test_only_bg_t_changes_only_the_box_and_fills_it_with_background() -> None:
    img, mask = scene()
    out = only_bg_t(img, mask)
    y0, y1, x0, x1 = bounding_box(mask)
    assert (y0, y1, x0, x1) == (3, 8, 3, 8)
    box = np.zeros(mask.shape, bool)
    box[y0:y1, x0:x1] = True
    assert np.array_equal(out[~box], img[~box])
    # Every filled pixel is a colour of the photo's background, and none is the cell's colour.
    bg_colours = {tuple(c) for c in img[mask == 0]}
    assert all(tuple(c) in bg_colours for c in out[box])
    assert not (out[box] == (250, 10, 10)).all(axis=1).any()


def test_mixed_keeps_the_cell_exactly_and_background_comes_from_the_partner() -> None:
    img, mask = scene(0)
    bg_img, bg_mask = scene(1)
    out = mixed(img, mask, bg_img, bg_mask)
    inside = mask > 0
    assert np.array_equal(out[inside], img[inside])
    expected_bg = only_bg_t(bg_img, bg_mask)
    assert np.array_equal(out[~inside], expected_bg[~inside])
    # The partner's own cell is gone (its box was filled with tiles).
    assert not (out[~inside] == (250, 10, 10)).all(axis=1).any()


def test_partners_are_seeded_and_respect_their_rule() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    p = choose_partners(labels, 3, seed=5)
    assert {k: v.tolist() for k, v in p.items()} == {k: v.tolist() for k, v in choose_partners(labels, 3, 5).items()}
    idx = np.arange(len(labels))
    assert (labels[p["mixed_same"]] == labels).all() and (p["mixed_same"] != idx).all()
    assert (p["mixed_rand"] != idx).all()
    assert (labels[p["mixed_next"]] == (labels + 1) % 3).all()


def test_partners_follow_background_owners_when_the_card_knows_home_families() -> None:
    # Balanced test split of biased data: a photo's class says nothing about its background, the family does.
    classes = ("cylindrical", "pouch", "prismatic")
    homes = {"cylindrical": ["wood"], "pouch": ["cardboard"], "prismatic": ["concrete"]}
    families = ["wood", "cardboard", "concrete", "cardboard", "concrete", "wood", "concrete", "wood", "cardboard",
                "esd_mat"]
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    owners = background_owners(families, homes, classes)
    assert owners.tolist() == [0, 1, 2, 1, 2, 0, 2, 0, 1, -1]
    p = choose_partners(labels, 3, seed=3, bg_classes=owners)
    idx = np.arange(len(labels))
    assert (owners[p["mixed_same"]] == labels).all() and (p["mixed_same"] != idx).all()
    assert (owners[p["mixed_next"]] == (labels + 1) % 3).all()
    assert (p["mixed_rand"] != idx).all()
    # Without home families (real data) or with an unknown family there is no owner map.
    assert background_owners(families, {}, classes) is None
    assert background_owners([*families[:-1], None], homes, classes) is None


def test_next_class_skips_absent_classes_and_lonely_images_keep_themselves() -> None:
    p = choose_partners(np.array([0, 2]), 3, seed=0)
    assert p["mixed_next"].tolist() == [1, 0]
    assert p["mixed_same"].tolist() == [0, 1]


@pytest.mark.parametrize("variant", ["original", "only_fg", "no_fg", "only_bg_t", "mixed_same", "mixed_rand",
                                     "mixed_next"])
def test_build_variant_is_deterministic_and_keeps_the_size(variant: str) -> None:
    pairs = [scene(i) for i in range(4)]
    images, masks = [a for a, _ in pairs], [b for _, b in pairs]
    partners = choose_partners(np.array([0, 0, 1, 1]), 3, seed=1)
    a = build_variant(variant, images, masks, partners)
    b = build_variant(variant, images, masks, partners)
    assert all(np.array_equal(x, y) and x.shape == images[0].shape for x, y in zip(a, b, strict=True))


def test_unknown_variant_is_named() -> None:
    img, mask = scene()
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        build_variant("nope", [img], [mask], {})


def test_resize_to_blends_photos_and_keeps_masks_binary() -> None:
    """A donor background of another size is resized smoothly (bilinear); a mask stays 0 / 255 (nearest)."""
    stripes = np.zeros((4, 4, 3), np.uint8)
    stripes[:, 1::2] = 255
    photo = resize_to(stripes, (4, 7))
    assert photo.shape == (4, 7, 3) and len(np.unique(photo)) > 2  # blended values between 0 and 255
    mask = resize_to(stripes[..., 0], (4, 7), is_mask=True)
    assert mask.shape == (4, 7) and set(np.unique(mask)) == {0, 255}
    assert resize_to(stripes, (4, 4)) is stripes  # same size: untouched


def test_a_mask_value_at_the_threshold_is_cell() -> None:
    mask = np.array([[MASK_THRESHOLD - 1, MASK_THRESHOLD, 255]], np.uint8)
    assert cell(mask).tolist() == [[False, True, True]]


def test_bounding_box_of_one_pixel_and_of_nothing() -> None:
    mask = np.zeros((5, 6), np.uint8)
    assert bounding_box(mask) is None
    mask[2, 4] = 255
    assert bounding_box(mask) == (2, 3, 4, 5)


def banded(y0: int, y1: int, x0: int, x1: int, h: int = 12, w: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A photo whose bands around the box (y0:y1, x0:x1) have their own grey: above 10, below 20, left 30,
    right 40; the box is the cell (250)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:y0], img[y1:] = 10, 20
    img[y0:y1, :x0], img[y0:y1, x1:] = 30, 40
    img[y0:y1, x0:x1] = 250
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return img, mask


def test_only_bg_t_tiles_from_the_band_with_the_largest_area() -> None:
    # above: 4 x 20 = 80 px, the largest, though the left band (12 x 2) is taller and narrower
    img, mask = banded(4, 11, 2, 18)
    assert set(np.unique(only_bg_t(img, mask)[4:11, 2:18])) == {10}
    # left and right (12 x 3 = 36 px) beat above and below (1 x 20 = 20 px), though those are wider
    img, mask = banded(1, 11, 3, 17)
    assert 30 in set(np.unique(only_bg_t(img, mask)[1:11, 3:17]))


def test_only_bg_t_when_the_box_is_the_whole_frame() -> None:
    """No band beside the box: the median background colour, or mid-grey when there is no background."""
    img = np.full((6, 6, 3), 250, np.uint8)
    assert (only_bg_t(img, np.full((6, 6), 255, np.uint8)) == 128).all()
    plus = np.zeros((6, 6), np.uint8)
    plus[2:4, :] = plus[:, 2:4] = 255  # reaches every edge, background in the four corners
    img[plus == 0] = (10, 20, 30)
    out = only_bg_t(img, plus)
    assert (out.reshape(-1, 3) == (10, 20, 30)).all()


def test_mixed_is_uint8_and_resizes_a_partners_mask_nearest_neighbour() -> None:
    """A partner photo of another size is resized to fit; its mask is resized nearest-neighbour, so a thin cell
    stays a cell and is removed from the partner's background (a bilinear 2x shrink would blur a one-pixel
    cell below the threshold and leave it in the background)."""
    img, mask = scene(size=48)
    bg = np.random.default_rng(1).integers(0, 200, (96, 96, 3)).astype(np.uint8)
    bg_mask = np.zeros((96, 96), np.uint8)
    bg_mask[51, 51] = 255  # nearest keeps it as pixel (25, 25) at half size
    small = resize_to(bg_mask, (48, 48), is_mask=True)
    assert bounding_box(small) == (25, 26, 25, 26)
    out = mixed(img, mask, bg, bg_mask)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out, mixed(img, mask, resize_to(bg, (48, 48)), small))
    assert not np.array_equal(out, mixed(img, mask, resize_to(bg, (48, 48)), np.zeros((48, 48), np.uint8)))
