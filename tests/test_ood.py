"""Out-of-distribution injection: exact masks, only masked examples change, each kind is what it claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cscore_lab.data import Dataset, from_arrays, load_digits
from cscore_lab.ood import OOD_KINDS, inject_ood

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture(scope="module")
def mnist_like() -> Dataset:
    """MNIST-shaped (28x28 greyscale, 8-bit) strokes made in the test: a bright bar on a dark field."""
    rng = np.random.default_rng(0)
    n = 120
    pics = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 20, size=2)
        pics[i, r:r + 8, c:c + 3] = rng.integers(150, 256)
    return from_arrays(pics.reshape(n, -1), np.arange(n) % 10, name="mnist-like")


@pytest.fixture(scope="module")
def colour() -> Dataset:
    """CIFAR-shaped: channel-first 8-bit colour pictures [N, 3, 12, 12], display images [N, 12, 12, 3]."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (60, 3, 12, 12)).astype(np.uint8)
    return from_arrays(x, np.arange(60) % 4, name="colour")


def _source_for(ds: Dataset, kind: str, mnist_like: Dataset):
    return mnist_like if (kind == "foreign" and ds.input_shape == (64,)) else None


@pytest.mark.parametrize("kind", OOD_KINDS)
@pytest.mark.parametrize("which", ["digits", "mnist_like", "colour"])
def test_masks_labels_ranges_and_determinism(request, kind, which, mnist_like):
    ds = request.getfixturevalue(which)
    source = _source_for(ds, kind, mnist_like)
    out, mask = inject_ood(ds, 0.25, kind, seed=3, source=source)
    n = len(ds)
    assert mask.dtype == bool and mask.shape == (n,) and mask.sum() == round(0.25 * n)
    assert out.name == f"{ds.name}-ood-{kind}0.25" and out.value_range == ds.value_range
    assert out.inputs.shape == ds.inputs.shape and out.images.shape == ds.images.shape
    # only masked examples change: inputs, display images and labels
    np.testing.assert_array_equal(out.inputs[~mask], ds.inputs[~mask])
    np.testing.assert_array_equal(out.images[~mask], ds.images[~mask])
    np.testing.assert_array_equal(out.labels[~mask], ds.labels[~mask])
    assert out.labels.min() >= 0 and out.labels.max() < ds.num_classes
    # within the value range, integer-valued like the data
    new = out.inputs[mask]
    assert new.min() >= 0 and new.max() <= ds.value_range
    np.testing.assert_array_equal(new, np.round(new))
    # display images show the new inputs (same mapping as the loaders': x / value_range * 255)
    shown = out.images[mask].astype(np.float64)
    expect = np.rint(new / ds.value_range * 255)
    expect = expect.transpose(0, 2, 3, 1) if new.ndim == 4 else expect.reshape(shown.shape)
    np.testing.assert_array_equal(shown, expect)
    # visibly different from the originals: for nearly all, the pixels that change carry a fifth of the ink
    old = ds.inputs[mask].reshape(mask.sum(), -1)
    flat = new.reshape(mask.sum(), -1)
    change = np.abs(flat - old).sum(axis=1) / (old.sum(axis=1) + flat.sum(axis=1))
    assert np.mean(change > 0.2) >= 0.9, (kind, which, np.sort(change)[:5])
    # the same seed gives the same copy; the mask and labels do not depend on the kind; another seed differs
    again, mask2 = inject_ood(ds, 0.25, kind, 3, source=source)  # the inject_ood(dataset, fraction, kind, seed)
    np.testing.assert_array_equal(mask, mask2)
    np.testing.assert_array_equal(again.inputs, out.inputs)
    np.testing.assert_array_equal(again.labels, out.labels)
    other, _ = inject_ood(ds, 0.25, "gaussian", seed=3)
    np.testing.assert_array_equal(other.labels, out.labels)
    assert not np.array_equal(inject_ood(ds, 0.25, kind, seed=4, source=source)[1], mask)


def test_random_labels_are_uniform_over_all_classes(digits):
    out, mask = inject_ood(digits, 1.0, "uniform", seed=0)
    counts = np.bincount(out.labels[mask], minlength=10)
    expected = mask.sum() / 10
    assert ((counts - expected) ** 2 / expected).sum() < 30  # chi-square, 9 d.o.f.: p ~ 5e-4
    assert np.mean(out.labels == digits.labels) == pytest.approx(0.1, abs=0.03)  # keeps its own label 1 time in 10


def test_inverted_rotated_shuffled_are_transforms_of_the_example_itself(digits, colour):
    for ds in (digits, colour):
        inv, m = inject_ood(ds, 0.3, "inverted", seed=5)
        np.testing.assert_array_equal(inv.inputs[m], ds.value_range - ds.inputs[m])
        sh, m = inject_ood(ds, 0.3, "shuffled", seed=5)
        old, new = ds.inputs[m], sh.inputs[m]
        if ds.inputs.ndim == 4:  # a pixel's colour moves as a whole: same multiset of (r, g, b) triples
            old, new = old.reshape(len(old), 3, -1).transpose(0, 2, 1), new.reshape(len(new), 3, -1).transpose(0, 2, 1)
            for a, b in zip(old, new):
                np.testing.assert_array_equal(np.unique(a, axis=0), np.unique(b, axis=0))
        else:
            np.testing.assert_array_equal(np.sort(old, axis=1), np.sort(new, axis=1))
    rot, m = inject_ood(digits, 0.3, "rotated", seed=5)
    turns = []
    for a, b in zip(digits.inputs[m].reshape(-1, 8, 8), rot.inputs[m].reshape(-1, 8, 8)):
        found = [k for k in (1, 2, 3) if np.array_equal(np.rot90(a, k), b)]
        assert found, "a rotated example is not a 90/180/270-degree rotation of the original"
        turns.append(found[0])
    assert set(turns) == {1, 2, 3}
    wide = from_arrays(np.random.default_rng(6).integers(0, 256, (20, 3, 6, 10)).astype(np.uint8), np.arange(20) % 2)
    rot, m = inject_ood(wide, 0.5, "rotated", seed=1)  # not square: 180 degrees only
    np.testing.assert_array_equal(rot.inputs[m], wide.inputs[m][:, :, ::-1, ::-1])


def test_noise_kinds_match_the_data_statistics():
    rng = np.random.default_rng(7)
    x = rng.integers(90, 166, (400, 3, 8, 8)).astype(np.uint8)  # far from the clip limits 0 and 255
    x[:, 2] //= 2  # channels with their own mean
    ds = from_arrays(x, np.arange(400) % 2)
    g, m = inject_ood(ds, 0.5, "gaussian", seed=0)
    data, new = ds.inputs.astype(np.float64), g.inputs[m].astype(np.float64)
    np.testing.assert_allclose(new.mean(axis=(0, 2, 3)), data.mean(axis=(0, 2, 3)), atol=0.5)
    np.testing.assert_allclose(new.std(axis=(0, 2, 3)), data.std(axis=(0, 2, 3)), rtol=0.03)
    u, m = inject_ood(ds, 0.5, "uniform", seed=0)
    new = u.inputs[m]
    assert new.min() == 0 and new.max() == 255 and new.mean() == pytest.approx(127.5, abs=1.5)


def test_flat_non_image_features(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 7)) * np.arange(1, 8)  # standardized-like columns of different scales
    ds = from_arrays(x, np.arange(50) % 2)
    assert ds.suggested_scaling == "standardize"
    for kind in ("gaussian", "uniform", "inverted", "shuffled"):
        out, m = inject_ood(ds, 0.2, kind, seed=2)
        assert m.sum() == 10
        new = out.inputs[m]
        assert new.min() >= ds.inputs.min() - 1e-6 and new.max() <= ds.inputs.max() + 1e-6
        assert not np.allclose(new, ds.inputs[m])
    out, m = inject_ood(ds, 0.2, "uniform", seed=2)  # each feature within its own observed range
    assert np.all(out.inputs[m] >= ds.inputs.min(axis=0)) and np.all(out.inputs[m] <= ds.inputs.max(axis=0))
    for kind in ("rotated", "foreign"):
        with pytest.raises(ValueError, match=f"kind='{kind}' needs picture-shaped inputs.*shape \\(7,\\)"):
            inject_ood(ds, 0.2, kind)


def test_foreign_pictures_come_from_the_bundled_sources(mnist_like, colour, digits):
    # MNIST-shaped: the digits upscaled to 20x20 and centred in 28x28, as MNIST's digits are
    out, m = inject_ood(mnist_like, 0.5, "foreign", seed=0)
    pics = out.inputs[m].reshape(-1, 28, 28)
    assert np.all(pics[:, :4] == 0) and np.all(pics[:, 24:] == 0) and np.all(pics[:, :, :4] == 0)
    assert pics[:, 4:24, 4:24].max(axis=(1, 2)).min() > 100
    # colour: patches of scikit-learn's sample photographs, smooth unlike the random originals
    out, m = inject_ood(colour, 0.5, "foreign", seed=0)
    new = out.inputs[m].astype(np.float64)
    roughness = lambda a: np.abs(np.diff(a, axis=-1)).mean()  # noqa: E731
    assert roughness(new) < 0.5 * roughness(colour.inputs[m].astype(np.float64))
    # digits: MNIST downscaled, from the Dataset given as source, in the digits' units 0..16
    out, m = inject_ood(digits, 0.1, "foreign", seed=0, source=mnist_like)
    assert out.inputs[m].max() <= 16 and out.inputs[m].max() > 8
    with pytest.raises(ValueError, match="8x8 data .* pass source= an MNIST folder"):
        inject_ood(digits, 0.1, "foreign")


def test_foreign_digits_from_the_real_mnist_folder(digits):
    if not MNIST.is_dir():
        pytest.skip(f"MNIST reference files not found at {MNIST}; this check needs ../shared/data/mnist")
    out, m = inject_ood(digits, 0.05, "foreign", seed=0, source=MNIST)
    new = out.inputs[m].reshape(-1, 8, 8)
    assert m.sum() == round(0.05 * len(digits)) and new.max() <= 16
    # downscaled MNIST digits are dark at the corners and bright in the middle, like the digits
    assert new[:, 3:5, 2:6].mean() > 2 * new[:, [0, 0, 7, 7], [0, 7, 0, 7]].mean()


def test_fraction_zero_and_one(digits):
    same, m = inject_ood(digits, 0, "inverted")
    assert not m.any() and np.array_equal(same.inputs, digits.inputs) and same.name == "digits-ood-inverted0"
    allof, m = inject_ood(digits, 1.0, "inverted")
    assert m.all() and np.array_equal(allof.inputs, 16 - digits.inputs)


def test_clear_errors(digits, mnist_like):
    with pytest.raises(ValueError, match="unknown out-of-distribution kind 'blur'; choose one of: gaussian, uniform"):
        inject_ood(digits, 0.1, "blur")
    for bad in (1.5, -0.1, True, "0.1", float("nan")):
        with pytest.raises(ValueError, match="fraction must be a number in \\[0, 1\\]"):
            inject_ood(digits, bad)
    with pytest.raises(ValueError, match="source= is only used by kind='foreign', not 'gaussian'"):
        inject_ood(digits, 0.1, "gaussian", source=mnist_like)
    with pytest.raises(TypeError, match="source must be a Dataset or the path of an MNIST folder, got int"):
        inject_ood(digits, 0.1, "foreign", source=3)
    with pytest.raises(TypeError, match="expects a cscore_lab Dataset, got ndarray"):
        inject_ood(digits.inputs, 0.1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        inject_ood(digits, 0.1, seed=-1)
