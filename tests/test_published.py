"""Published C-scores: the tensorflow-datasets order of MNIST, the readers and their checks.

The real released files are read from ``../shared/data`` (skipped, with the reason, when
absent); CIFAR loading is also tested on small CIFAR-format fixtures written here.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from cscore_lab.cscores import CScores
from cscore_lab.data import DataError, from_arrays, load_cifar10, load_cifar100, load_mnist
from cscore_lab.analysis import agreement, lowest_overlap
from cscore_lab.published import PUBLISHED, load_published, tfds_mnist_order

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _require(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found at {path}; these checks need ../shared/data (see its README.md)")
    return path


# ----------------------------------------------------------------------------- tfds order


def test_tfds_order_matches_brute_force_128bit_sort() -> None:
    n = 2000
    keys = [int(hashlib.md5(b"train" + str(i).encode()).hexdigest(), 16) for i in range(n)]
    expected = sorted(range(n), key=keys.__getitem__)
    np.testing.assert_array_equal(tfds_mnist_order(n), expected)


def test_tfds_order_is_a_permutation_and_depends_on_split() -> None:
    order = tfds_mnist_order()
    assert order.dtype == np.int64 and order.shape == (60_000,)
    np.testing.assert_array_equal(np.sort(order), np.arange(60_000))
    assert not np.array_equal(tfds_mnist_order(500, split="test"), tfds_mnist_order(500))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "60000"])
def test_tfds_order_rejects_bad_n(bad: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        tfds_mnist_order(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(_require("mnist"))


@pytest.fixture(scope="module")
def knn_agreement(mnist):
    """Share of the 10 nearest neighbours (pixel space, among all 60,000) that carry the label,
    for a random 2,000 examples: (index, agreement)."""
    import torch

    x = torch.from_numpy(mnist.inputs / 255.0)
    sq = (x * x).sum(1)
    idx = np.sort(np.random.default_rng(0).choice(len(mnist), 2000, replace=False))
    labels = torch.from_numpy(mnist.labels)
    agree = []
    for block in np.array_split(idx, 4):
        q = torch.from_numpy(block)
        d = sq[q, None] - 2.0 * x[q] @ x.T + sq[None, :]
        d[torch.arange(len(block)), q] = float("inf")  # not its own neighbour
        nn = d.topk(10, largest=False).indices
        agree.append((labels[nn] == labels[q, None]).float().mean(1))
    return idx, torch.cat(agree).numpy()


def test_published_mnist_remap_agrees_with_neighbour_labels(mnist, knn_agreement) -> None:
    cs = load_published("mnist", _require("published"), mnist)
    idx, agree = knn_agreement
    rho = spearmanr(cs.scores[idx], agree).statistic
    assert 0.5 < rho < 0.75, f"remapped published scores vs 10-NN label agreement: Spearman {rho:.3f}, expected about +0.63"
    raw = np.load(_require("published", "mnist-cscores.npy"), allow_pickle=False)
    rho_raw = spearmanr(raw[idx], agree).statistic
    assert abs(rho_raw) < 0.08, f"without the remap the Spearman should be about 0, got {rho_raw:.3f}"


def test_published_mnist_result_is_a_full_cscores(mnist) -> None:
    cs = load_published("mnist", _require("published", "mnist-cscores.npy"), mnist)
    assert isinstance(cs, CScores) and cs.source == "published" and cs.ratios == ()
    np.testing.assert_array_equal(cs.labels, mnist.labels)
    assert cs.fingerprint == mnist.fingerprint and cs.runs == 200
    assert cs.meta["ratios"] == list(PUBLISHED["mnist"]["ratios"])
    assert np.all((cs.scores >= 0) & (cs.scores <= 1))
    assert len(cs.to_frame()) == 60_000 and "C-scores" in cs._repr_html_()
    assert cs.scores[cs.lowest(600)].max() <= np.sort(cs.scores)[599]


def test_published_mnist_refuses_shuffled_or_partial_or_missing_data(mnist, tmp_path: Path) -> None:
    path = _require("published")
    with pytest.raises(DataError, match="holds scores only, no labels"):
        load_published("mnist", path)
    with pytest.raises(DataError, match="cover 60000 examples but .* has 1000"):
        load_published("mnist", path, mnist.subset(np.arange(1000)))
    perm = np.random.default_rng(1).permutation(len(mnist))
    with pytest.raises(DataError, match="first ten labels .* shuffled"):
        load_published("mnist", path, mnist.subset(perm))
    swapped = mnist.labels.copy()  # same counts and first ten labels, two later labels exchanged
    a, b = 100, np.flatnonzero(mnist.labels != mnist.labels[100])[-1]
    swapped[[a, b]] = swapped[[b, a]]
    with pytest.raises(DataError, match="not in the official order"):
        load_published("mnist", path, mnist.with_labels(swapped))
    short = tmp_path / "short.npy"
    np.save(short, np.full(59_999, 0.5))
    with pytest.raises(DataError, match="holds 59999 scores.*60000"):
        load_published("mnist", short, mnist)


# ----------------------------------------------------------------------------- real CIFAR files


@pytest.mark.parametrize("name,k", [("cifar10", 10), ("cifar100", 100)])
def test_real_cifar_files_load_without_data(name: str, k: int) -> None:
    cs = load_published(name, _require("published"))
    assert len(cs) == 50_000 and cs.num_classes == k and cs.dataset == name
    np.testing.assert_array_equal(np.bincount(cs.labels), np.full(k, 50_000 // k))


def test_real_files_swapped_are_refused() -> None:
    pub = _require("published")
    with pytest.raises(DataError, match="is this the cifar100 file"):
        load_published("cifar10", pub / PUBLISHED["cifar100"]["file"])
    with pytest.raises(DataError, match="only 10 of the 100 .*is this the cifar10 file"):
        load_published("cifar100", pub / PUBLISHED["cifar10"]["file"])
    with pytest.raises(DataError, match="is an .npz archive"):
        load_published("mnist", pub / PUBLISHED["cifar10"]["file"], from_arrays(np.zeros((60_000, 1)), np.arange(60_000) % 10))
    with pytest.raises(DataError, match="single .npy array"):
        load_published("cifar10", pub / PUBLISHED["mnist"]["file"])


# ----------------------------------------------------------------------------- CIFAR-format fixtures


def _write_cifar10(folder: Path, labels: np.ndarray, rng: np.random.Generator) -> None:
    folder.mkdir()
    for i, part in enumerate(np.array_split(labels, 5), start=1):
        batch = {b"batch_label": f"training batch {i} of 5".encode(),
                 b"data": rng.integers(0, 256, (len(part), 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in part]}
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump(batch, fh)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, fh)


def _write_cifar100(folder: Path, labels: np.ndarray, rng: np.random.Generator) -> None:
    folder.mkdir()
    batch = {b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
             b"fine_labels": [int(v) for v in labels], b"coarse_labels": [int(v) // 5 for v in labels]}
    with open(folder / "train", "wb") as fh:
        pickle.dump(batch, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)]}, fh)


@pytest.fixture()
def cifar10_fixture(tmp_path: Path):
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.arange(60) % 10)
    _write_cifar10(tmp_path / "cifar-10-batches-py", labels, rng)
    scores = rng.uniform(0, 1, labels.size)
    np.savez(tmp_path / "cifar10-cscores-orig-order.npz", labels=labels.astype(np.int64), scores=scores)
    return tmp_path, labels, scores


def test_cifar10_fixture_loads_in_batch_order(cifar10_fixture) -> None:
    root, labels, scores = cifar10_fixture
    data = load_cifar10(root / "cifar-10-batches-py")
    for path in (root / "cifar10-cscores-orig-order.npz", root):  # the file, or its folder
        cs = load_published("cifar10", path, data)
        np.testing.assert_array_equal(cs.scores, scores)
        np.testing.assert_array_equal(cs.labels, data.labels)
        assert cs.fingerprint == data.fingerprint and cs.source == "published" and cs.ratios == ()
        assert cs.meta["sha256"] == hashlib.sha256((root / "cifar10-cscores-orig-order.npz").read_bytes()).hexdigest()


def test_cifar10_label_mismatch_names_count_and_first_index(cifar10_fixture, tmp_path: Path) -> None:
    root, labels, scores = cifar10_fixture
    data = load_cifar10(root / "cifar-10-batches-py")
    bad = labels.copy()
    bad[[17, 41]] = (bad[[17, 41]] + 1) % 10
    np.savez(tmp_path / "bad.npz", labels=bad, scores=scores)
    with pytest.raises(DataError, match=r"2 of 60 labels differ; first at index 17 \(file: \d, data set: \d\)"):
        load_published("cifar10", tmp_path / "bad.npz", data)
    with pytest.raises(DataError, match="cover 60 examples but .* has 59"):
        load_published("cifar10", root, data.subset(np.arange(59)))


def test_cifar100_fixture_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.arange(200) % 100)
    _write_cifar100(tmp_path / "cifar-100-python", labels, rng)
    scores = rng.uniform(0, 1, labels.size)
    np.savez(tmp_path / "c100.npz", labels=labels, scores=scores)
    data = load_cifar100(tmp_path / "cifar-100-python")
    cs = load_published("cifar100", tmp_path / "c100.npz", data)
    np.testing.assert_array_equal(cs.scores, scores)
    with pytest.raises(DataError, match="100 classes but the data set"):
        load_published("cifar100", tmp_path / "c100.npz", from_arrays(np.zeros((200, 2)), labels % 10))


# ----------------------------------------------------------------------------- clear errors


def _ok_labels(n: int = 40) -> np.ndarray:
    return np.arange(n) % 10


@pytest.mark.parametrize(
    "arrays,match",
    [
        ({"labels": _ok_labels()}, r"lacks key\(s\) \['scores'\].*found \['labels'\]"),
        ({"scores": np.full(40, 0.5)}, r"lacks key\(s\) \['labels'\]"),
        ({"labels": _ok_labels(), "scores": np.r_[np.full(39, 0.5), np.nan]}, "1 published cifar10 scores are NaN or infinite .*index 39"),
        ({"labels": _ok_labels(), "scores": np.r_[np.full(39, 0.5), 1.5]}, "outside \\[0, 1\\] .*index 39: 1.5"),
        ({"labels": _ok_labels(), "scores": np.full((40, 2), 0.5)}, "must be 1-D, got shape \\(40, 2\\)"),
        ({"labels": _ok_labels(41), "scores": np.full(40, 0.5)}, "labels have shape \\(41,\\) but there are 40 scores"),
        ({"labels": _ok_labels() + 0.5, "scores": np.full(40, 0.5)}, "labels must be integers"),
        ({"labels": np.r_[_ok_labels(39), 10], "scores": np.full(40, 0.5)}, "label 10 at index 39 is outside 0..9"),
    ],
)
def test_bad_npz_files(tmp_path: Path, arrays: dict, match: str) -> None:
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_published("cifar10", tmp_path / "f.npz")


def test_unknown_name_missing_file_and_non_numpy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown published scores 'imagenet'; choose one of: mnist, cifar10, cifar100"):
        load_published("imagenet", tmp_path)
    with pytest.raises(DataError, match="not found: .*nope.npz"):
        load_published("cifar10", tmp_path / "nope.npz")
    with pytest.raises(DataError, match="folder without cifar100-cscores-orig-order.npz"):
        load_published("cifar100", tmp_path)
    (tmp_path / "text.npz").write_text("labels,scores\n1,0.5\n")
    with pytest.raises(DataError, match="not a NumPy .npy/.npz file readable without pickle"):
        load_published("cifar10", tmp_path / "text.npz")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="without pickle"):
        load_published("mnist", tmp_path / "objects.npy")
    with pytest.raises(TypeError, match="Dataset or None, got ndarray"):
        load_published("cifar10", tmp_path, np.zeros(3))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- CLI


def test_cli_published(cifar10_fixture, tmp_path: Path, capsys) -> None:
    from cscore_lab.cli import main

    root, labels, scores = cifar10_fixture
    out = tmp_path / "saved.npz"
    assert main(["published", "cifar10", str(root), "--data", str(root / "cifar-10-batches-py"),
                 "--lowest", "3", "--save", str(out)]) == 0
    text = capsys.readouterr().out
    assert "checked against" in text and f"{int(np.argmin(scores)):5d}" in text
    np.testing.assert_array_equal(CScores.load(out).scores, scores)
    assert main(["published", "mnist", str(root)]) == 2
    assert "mnist needs --data" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, labels=(labels + 1) % 10, scores=scores)
    assert main(["published", "cifar10", str(bad), "--data", str(root / "cifar-10-batches-py")]) == 2
    assert "labels differ" in capsys.readouterr().err


# ----------------------------------------------------------------------------- agreement


def _brute_overlap(a: np.ndarray, b: np.ndarray, k: int, trials: int = 4000) -> float:
    """Average overlap over random tie-breaks of ``a`` (the definition lowest_overlap computes in closed form)."""
    rng = np.random.default_rng(0)
    theirs = set(np.argsort(b, kind="stable")[:k])
    total = 0
    for _ in range(trials):
        order = np.lexsort((rng.random(a.size), a))
        total += len(theirs.intersection(order[:k]))
    return total / (trials * k)


def test_lowest_overlap_shares_ties_in_expectation() -> None:
    rng = np.random.default_rng(5)
    b = rng.random(60)
    a = np.round(b + rng.normal(0, 0.2, 60), 1)  # coarse: many ties
    for k in (1, 6, 20):
        assert lowest_overlap(a, b, k) == pytest.approx(_brute_overlap(a, b, k), abs=0.02)
    assert lowest_overlap(b, b, 6) == 1.0 and lowest_overlap(-b, b, 6) == 0.0
    with pytest.raises(ValueError, match="k must be an integer in 1..60"):
        lowest_overlap(a, b, 0)


def test_agreement_values_and_checks() -> None:
    rng = np.random.default_rng(2)
    theirs = rng.random(1000)
    ours = theirs + rng.normal(0, 0.002, 1000)
    ours[3] = np.nan
    res = agreement(ours, theirs, lowest=10)
    ok = np.isfinite(ours)
    assert res["n"] == 999
    assert res["spearman"] == pytest.approx(spearmanr(ours[ok], theirs[ok]).statistic)
    assert res["mad"] == pytest.approx(np.mean(np.abs(ours[ok] - theirs[ok])))
    assert 0.3 < res["overlap_lowest"] <= 1.0
    with pytest.raises(ValueError, match="ours has 999 scores and theirs 1000"):
        agreement(ours[:-1], theirs)
    a = CScores(theirs, np.arange(1000) % 10)
    b = CScores(theirs, (np.arange(1000) + 1) % 10)
    with pytest.raises(ValueError, match="different labels \\(1000 differ, first at index 0\\)"):
        agreement(a, b)
