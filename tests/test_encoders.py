"""Image encoder stages follow the frame size, and the reconstruction loss weights what moves."""

from __future__ import annotations

import pytest
import torch

from wmrl.nets.encoders import EncoderConfig, ImageDecoder, ImageEncoder


@pytest.mark.parametrize("size, stages, side", [(64, 4, 4), (16, 2, 4), (10, 2, 2), (6, 1, 3)])
def test_stages_follow_the_frame_size(size, stages, side):
    enc = ImageEncoder((3, size, size), EncoderConfig())
    assert len(enc.heights) - 1 == stages
    assert enc.out_shape[1:] == (side, side)  # a 16x16 frame keeps a 4x4 map, not 1x1
    dec = ImageDecoder(8, enc, 3)
    assert dec(torch.zeros(2, 8)).shape == (2, 3, size, size)


def test_a_fixed_stage_count_still_wins():
    assert ImageEncoder((3, 16, 16), EncoderConfig(stages=3)).out_shape[1:] == (2, 2)


def _frames() -> torch.Tensor:
    """(8, 3, 16, 16) uint8: a static grey floor row and one white pixel at a different place per frame."""
    obs = torch.zeros(8, 3, 16, 16, dtype=torch.uint8)
    obs[:, :, -1] = 128
    for i in range(8):
        obs[i, :, i, 2 * i] = 255
    return obs


def test_plain_loss_is_summed_squared_error():
    obs = _frames()
    dec = ImageDecoder(8, ImageEncoder((3, 16, 16), EncoderConfig()), 3, object_weight=0.0)
    pred = torch.full((8, 3, 16, 16), 0.25)
    expected = (pred - obs.float() / 255).pow(2).sum((1, 2, 3))
    torch.testing.assert_close(dec.loss(pred, obs), expected)


def test_object_weight_scales_the_moving_pixel_not_the_background():
    obs = _frames()
    enc = ImageEncoder((3, 16, 16), EncoderConfig())
    plain, weighted = ImageDecoder(8, enc, 3, 0.0), ImageDecoder(8, enc, 3, 10.0)
    background = obs.float() / 255
    background[:, :, :-1] = 0  # the prediction drops the ball and gets the floor right
    with_floor_error = background.clone()
    with_floor_error[:, :, -1] += 0.5  # ... or keeps the ball's absence and misses the floor
    # Dropping a one-pixel object: weight 1 + 10 * (distance of the white pixel from the mean frame).
    ratio = weighted.loss(background, obs) / plain.loss(background, obs)
    assert torch.allclose(ratio, torch.full((8,), 1 + 10 * (1 - 1 / 8)))
    # The static floor equals the mean frame, so its errors are not weighted.
    floor_only = weighted.loss(with_floor_error, obs) - weighted.loss(background, obs)
    torch.testing.assert_close(floor_only, torch.full((8,), 3 * 16 * 0.25))


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_bad_object_weight_is_refused(value):
    from wmrl.errors import WmrlError

    with pytest.raises(WmrlError, match="object_weight"):
        EncoderConfig(object_weight=value).validate()
