"""The one preprocessing path letterboxes: the whole frame, aspect ratio kept, padded to a square."""

import numpy as np
import torch

from evbattery.core.config import CUTOUT_FILL
from evbattery.data.transforms import PAD_GREY, letterbox_box, pad_fill, resize_mask, resize_uint8, unletterbox_mask


def test_a_wide_photo_keeps_its_shape_and_every_edge() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, -10:] = 255  # a bright strip at the far right edge must survive (no centre crop)
    out = resize_uint8(img, 30)
    assert out.shape == (3, 30, 30)
    assert letterbox_box(100, 300, 30) == (10, 0, 10, 30)
    assert out[:, 10:20, -1].float().mean() > 200  # the strip, at the photo's right edge
    assert out[:, 10:20, :20].float().max() < 30  # the black photo itself, not squashed grey
    assert (out[:, :10] == torch.tensor(PAD_GREY, dtype=torch.uint8).view(3, 1, 1)).all()  # padding above
    assert (out[:, 20:] == 128).all()  # and below


def test_a_tall_photo_is_padded_left_and_right_with_the_given_fill() -> None:
    img = np.full((300, 100, 3), 200, np.uint8)
    out = resize_uint8(img, 30, fill=CUTOUT_FILL)
    assert letterbox_box(300, 100, 30) == (0, 10, 30, 10)
    assert (out[:, :, :10] == 0).all() and (out[:, :, 20:] == 0).all()
    assert (out[:, :, 10:20] == 200).all()


def test_a_square_photo_is_only_resized() -> None:
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = resize_uint8(img, 32)
    assert out.shape == (3, 32, 32) and 0 < out.float().std() < 100
    assert torch.equal(resize_uint8(img, 64), torch.from_numpy(img).permute(2, 0, 1))


def test_cutouts_pad_with_their_own_background() -> None:
    assert pad_fill("cutouts") == CUTOUT_FILL and pad_fill("images") == PAD_GREY


def test_a_mask_is_letterboxed_like_its_photo_and_comes_back_to_the_photo_size() -> None:
    mask = np.zeros((120, 240), np.uint8)
    mask[40:80, 100:140] = 255
    square = resize_mask(mask, 60)  # 120 x 240 -> 30 x 60 at top 15
    assert square.shape == (60, 60) and square[:15].max() == 0 and square[45:].max() == 0
    assert square[15 + 10:15 + 20, 25:35].min() == 255
    back = unletterbox_mask(square, 120, 240)
    assert back.shape == (120, 240)
    assert (back.numpy() == mask).mean() > 0.98


def test_a_grad_cam_of_a_letterboxed_input_lands_on_the_photo_not_the_padding() -> None:
    from evbattery.inference.gradcam import overlay

    img = np.zeros((100, 300, 3), np.uint8)
    cam = np.zeros((30, 30), np.float32)
    cam[10:20, 25:] = 1.0  # hot at the right end of the photo's band; the padding rows are cold
    out = overlay(img, cam, alpha=1.0)
    assert out.shape == (100, 300, 3)
    red = out[..., 0].astype(float)  # the JET colour map: hot is red, cold is blue
    assert red[:, -20:].mean() > 100 and red[:, :200].mean() < 10
    assert red[:5, -20:].mean() > 100  # the hot band covers the photo's whole height (squashed, only its middle third)
