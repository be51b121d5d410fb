"""Object-preserving zoom: the whole cell stays in view and gets larger."""

from __future__ import annotations

import torch

from evbattery.data.loaders import cell_boxes, zoom_to_cell


def test_zoom_keeps_whole_cell_and_enlarges_it() -> None:
    torch.manual_seed(0)
    img = torch.zeros(3, 96, 96, dtype=torch.uint8)
    img[:, 70:80, 5:20] = 255  # a small cell near the bottom-left corner
    mask = (img[0] > 0).to(torch.uint8)[None] * 255
    box = cell_boxes(mask)[0]
    assert box.tolist() == [70, 80, 5, 20]
    areas = []
    for _ in range(100):
        out, _ = zoom_to_cell(img, box)
        bright = out[0] > 127
        ys, xs = torch.nonzero(bright, as_tuple=True)
        # the cell is never cut by the crop border: its bright pixels don't touch the edges it didn't touch
        assert len(ys) > 0 and ys.min() > 0 and xs.max() < 95
        areas.append(int(bright.sum()))
    assert min(areas) >= 150 * 0.9 and max(areas) > 150 * 2  # never shrinks; sometimes much larger


def test_empty_mask_box_is_whole_frame() -> None:
    box = cell_boxes(torch.zeros(1, 32, 32, dtype=torch.uint8))[0]
    assert box.tolist() == [0, 32, 0, 32]
    img = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    assert torch.equal(zoom_to_cell(img, box)[0], img)
