"""Value-head maths: the three target encodings and the expected value."""

import pytest
import torch

from lerobot_policy_rewact.value_distribution import ValueSupport

ENCODINGS = ("one_hot", "two_hot", "hl_gauss")


@pytest.fixture
def support():
    return ValueSupport(0.0, 1.0, 101, sigma_ratio=0.75)


@pytest.mark.parametrize("kind", ENCODINGS)
def test_each_encoding_is_a_distribution(support, kind):
    targets = torch.rand(257)
    probs = support.encode(targets, kind)
    assert probs.shape == (257, 101)
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(257))


def test_two_hot_expectation_equals_target(support):
    targets = torch.cat([torch.rand(500), torch.tensor([0.0, 1.0, 0.5, 0.005])])
    torch.testing.assert_close(support.expectation(support.encode(targets, "two_hot")), targets)


def test_two_hot_puts_mass_on_the_two_neighbours(support):
    probs = support.encode(torch.tensor([0.123]), "two_hot")[0]
    assert probs.nonzero().flatten().tolist() == [12, 13]
    torch.testing.assert_close(probs[12:14], torch.tensor([0.7, 0.3]))


def test_one_hot_picks_the_nearest_point(support):
    probs = support.encode(torch.tensor([0.0, 0.126, 0.994, 1.0]), "one_hot")
    assert probs.argmax(-1).tolist() == [0, 13, 99, 100]
    assert (probs.max(-1).values == 1).all()


@pytest.mark.parametrize("num_bins", [11, 51, 101])
def test_hl_gauss_expectation_within_half_a_spacing_inside_the_range(num_bins):
    support = ValueSupport(0.0, 1.0, num_bins, sigma_ratio=0.75)
    spacing = 1.0 / (num_bins - 1)
    # Inside the range, away from the borders where the truncated Gaussian is lopsided.
    targets = torch.linspace(2 * spacing, 1 - 2 * spacing, 300)
    error = (support.expectation(support.encode(targets, "hl_gauss")) - targets).abs()
    assert error.max() < spacing / 2


def test_hl_gauss_width_follows_sigma_ratio():
    narrow = ValueSupport(0.0, 1.0, 101, sigma_ratio=0.25).encode(torch.tensor([0.5]), "hl_gauss")
    wide = ValueSupport(0.0, 1.0, 101, sigma_ratio=2.0).encode(torch.tensor([0.5]), "hl_gauss")
    assert narrow.max() > wide.max()
    assert (wide > 1e-3).sum() > (narrow > 1e-3).sum()


def test_custom_value_range():
    support = ValueSupport(-1.0, 0.0, 21)
    targets = torch.tensor([-1.0, -0.37, 0.0])
    torch.testing.assert_close(support.expectation(support.encode(targets, "two_hot")), targets)


@pytest.mark.parametrize("kind", ENCODINGS)
@pytest.mark.parametrize("bad", [1.2, -0.3, float("nan")])
def test_targets_outside_the_range_raise(support, kind, bad):
    with pytest.raises(ValueError, match="outside the value range|non-finite") as error:
        support.encode(torch.tensor([0.5, bad]), kind)
    if bad == bad:  # not NaN: the message names the offending value
        assert str(round(bad, 1)) in str(error.value)


def test_float_noise_at_the_border_is_clamped(support):
    probs = support.encode(torch.tensor([1.0 + 1e-7, -1e-7]), "two_hot")
    torch.testing.assert_close(support.expectation(probs), torch.tensor([1.0, 0.0]))


def test_unknown_encoding_raises(support):
    with pytest.raises(ValueError, match="three_hot"):
        support.encode(torch.tensor([0.5]), "three_hot")
