"""compute_proxies end to end on a small digits subset (the registry, the shared training), the ProxyTable, the CLI."""

import numpy as np
import pytest
import torch

from cscore_lab import cli
from cscore_lab.data import load_digits
from cscore_lab.proxies.dynamics import DYNAMICS_PROXIES
from cscore_lab.proxies.label_issues import cleanlab_available
from cscore_lab.proxies.recorders import FeatureRecorder
from cscore_lab.proxies.suite import DEFAULT_FAMILIES, FAMILIES, ProxyTable, compute_proxies
from cscore_lab.recipes import Plan, Recipe
from cscore_lab.trainer import model_seeds, prepare_inputs, train_group

RECIPE = Recipe(name="tiny", hidden=(24,), learning_rate=0.1, batch_size=16, epochs=3)  # 15 steps per epoch
N = 240
HARDNESS = ["aum", "el2n_e1", "grand_e1", "datamap_confidence", "datamap_variability", "dataiq_aleatoric",
            "final_loss", "final_margin", "prototypicality_e1", "prototypicality_e3"]


def brute_kde(x: np.ndarray, y: np.ndarray, h: float) -> dict[str, np.ndarray]:
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / h**2)
    np.fill_diagonal(k, 0.0)
    same = y[:, None] == y[None, :]
    density, same_label = k.sum(1) / len(x), (k * same).sum(1) / len(x)
    return {"density": density, "same_label": same_label, "signed": 2 * same_label - density}


def brute_knn(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return (y[np.argsort(d2, axis=1, kind="stable")[:, :k]] == y[:, None]).mean(1)


@pytest.fixture(scope="module")
def small():
    return load_digits().subset(np.arange(N), name="digits-small")


@pytest.fixture(scope="module")
def table(small):
    return compute_proxies(small, RECIPE, runs=2, epochs_for_features=(1, 3), knn_k=5, lof_neighbors=10, seed=3)


def test_columns_and_metadata(table, small):
    spaces = ["input", "hidden_e1", "hidden_e3"]
    expected = (list(DYNAMICS_PROXIES)
                + [f"kde_{space}_{kind}" for space in spaces for kind in ("density", "same_label", "signed")]
                + [f"knn_{space}" for space in spaces] + [f"lof_{space}" for space in spaces] + HARDNESS
                + (["cleanlab_self_confidence", "cleanlab_label_issue"] if cleanlab_available() else []))
    assert table.names == expected
    assert "vog" not in DEFAULT_FAMILIES and set(FAMILIES) - set(DEFAULT_FAMILIES) == {"vog"}
    assert table.meta["families"] == [f for f in DEFAULT_FAMILIES if f != "cleanlab" or cleanlab_available()]
    assert table.meta["recorders"] == ["dynamics", "features", "norms", "trajectory"]  # one training fed them all
    assert all(v.shape == (N,) and np.isfinite(v).all() for v in table.values.values())
    assert table.dataset == "digits-small" and table.fingerprint == small.fingerprint
    assert table.meta["feature_epochs"] == [1, 3] and table.meta["runs"] == 2
    assert len(table.meta["bandwidths"]["kde_hidden_e3"]["bandwidth"]) == 2
    assert table.meta["bandwidths"]["kde_input"]["rule"] == "median"
    assert len(table.meta["train_accuracy"]) == 2 and min(table.meta["train_accuracy"]) > 0.8


def test_input_space_proxies_match_brute_force(table, small):
    x = small.inputs / small.value_range  # the recipe's "range" scaling
    h = table.meta["bandwidths"]["kde_input"]["bandwidth"][0]
    ref = brute_kde(x, small.labels, h)
    for kind in ("density", "same_label", "signed"):
        np.testing.assert_allclose(table[f"kde_input_{kind}"], ref[kind], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(table["knn_input"], brute_knn(x, small.labels, 5))


def test_hidden_proxies_are_per_run_then_averaged(table, small):
    x, y = prepare_inputs(small, RECIPE, torch.device("cpu"))
    rec = FeatureRecorder(x, [3])
    train_group(x, y, [np.arange(N)] * 2, RECIPE, [model_seeds(3, 1.0, r) for r in range(2)], num_classes=10,
                callbacks=[rec])
    hs = table.meta["bandwidths"]["kde_hidden_e3"]["bandwidth"]
    refs = [brute_kde(f, small.labels, h) for f, h in zip(rec.features[3], hs)]
    np.testing.assert_allclose(table["kde_hidden_e3_same_label"], (refs[0]["same_label"] + refs[1]["same_label"]) / 2,
                               rtol=1e-4, atol=1e-7)
    knn = (brute_knn(rec.features[3][0], small.labels, 5) + brute_knn(rec.features[3][1], small.labels, 5)) / 2
    np.testing.assert_allclose(table["knn_hidden_e3"], knn)


def test_families_and_spaces_select(small):
    t = compute_proxies(small, RECIPE, families=["knn"], spaces=["input"], knn_k=3)
    assert t.names == ["knn_input"] and "train_accuracy" not in t.meta  # nothing trained
    t = compute_proxies(small, RECIPE, families=["dynamics"], spaces=[])
    assert t.names == list(DYNAMICS_PROXIES)
    with pytest.raises(ValueError, match="the knn family needs a feature space"):
        compute_proxies(small, RECIPE, families=["knn"], spaces=[])


def test_one_shared_training_gives_what_each_family_gives_alone(table, small):
    """Sharing the training (and knn/lof sharing one neighbour search) changes no number."""
    for families in (["dynamics"], ["aum", "loss"], ["knn"], ["lof"], ["prototypicality"], ["grand"]):
        alone = compute_proxies(small, RECIPE, families=families, runs=2, epochs_for_features=(1, 3), knn_k=5,
                                lof_neighbors=10, seed=3)
        assert alone.names and set(alone.names) <= set(table.names)
        for name in alone.names:
            np.testing.assert_array_equal(alone[name], table[name], err_msg=name)


def test_learning_speed_records_every_few_steps(small, table):
    # "auto": about RECORDS_PER_EPOCH = 10 records per epoch (15 steps per epoch here: every 2 steps, then the end)
    assert table.meta["options"]["dynamics_every_steps"] == 2
    assert table.meta["dynamics_records"] == {"every_steps": 2, "records": 23}
    per_epoch = compute_proxies(small, RECIPE, families=["dynamics"], runs=2, seed=3, dynamics_every_steps=None)
    assert per_epoch.meta["dynamics_records"] == {"every_steps": None, "records": 3}
    every5 = compute_proxies(small, RECIPE, families=["dynamics"], runs=2, seed=3, dynamics_every_steps=5)
    assert every5.meta["dynamics_records"] == {"every_steps": 5, "records": 9}
    assert not np.array_equal(per_epoch["cum_accuracy"], table["cum_accuracy"])
    with pytest.raises(ValueError, match="dynamics_every_steps must be 'auto', None or a positive integer"):
        compute_proxies(small, RECIPE, families=["dynamics"], dynamics_every_steps="often")


def test_one_progress_bar_over_every_step(small, capsys):
    compute_proxies(small, RECIPE, families=["dynamics", "knn", "aum"], spaces=["input"], progress=True)
    err = capsys.readouterr().err
    # 3 training epochs + knn in one space + dynamics + aum: the bar ends exactly at its total
    assert "6/6" in err and "7/6" not in err


def test_bandwidth_scale(small, table):
    t = compute_proxies(small, RECIPE, families=["kde"], spaces=["input"], bandwidth_scale=0.5, seed=3)
    bw = t.meta["bandwidths"]["kde_input"]
    assert bw["rule"] == "0.5 x median"
    assert bw["bandwidth"][0] == pytest.approx(0.5 * table.meta["bandwidths"]["kde_input"]["bandwidth"][0])
    ref = brute_kde(small.inputs / small.value_range, small.labels, bw["bandwidth"][0])
    np.testing.assert_allclose(t["kde_input_signed"], ref["signed"], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="bandwidth_scale must be a positive"):
        compute_proxies(small, RECIPE, families=["kde"], spaces=["input"], bandwidth_scale=0)


def test_errors(small):
    with pytest.raises(ValueError, match="unknown proxy families \\['knm'\\]"):
        compute_proxies(small, RECIPE, families=["knm"])
    with pytest.raises(ValueError, match="integers in 1..3"):
        compute_proxies(small, RECIPE, epochs_for_features=[4])
    with pytest.raises(ValueError, match="runs must be an integer >= 1, got 0"):
        compute_proxies(small, RECIPE, runs=0)
    with pytest.raises(ValueError, match="unknown preset"):
        compute_proxies(small, "nope")
    with pytest.raises(ValueError, match=r"knn_k=300 is out of range"):
        compute_proxies(small, RECIPE, families=["knn"], spaces=["input"], knn_k=300)


def test_table_round_trip_and_views(table, tmp_path):
    path = table.save(tmp_path / "proxies")
    assert path.suffix == ".npz"
    back = ProxyTable.load(path)
    assert back.names == table.names and back.meta == table.meta and back.class_names == table.class_names
    for name in table.names:
        np.testing.assert_array_equal(back[name], table[name])
    df = table.to_frame()
    assert list(df.columns) == ["label", *table.names] and len(df) == N
    assert "cum_accuracy" in table._repr_html_() and "higher = more regular" in table._repr_html_()
    assert table.select(["knn_input", "cum_accuracy"]).names == ["knn_input", "cum_accuracy"]
    with pytest.raises(ValueError, match="unknown proxy names \\['nope'\\]"):
        table.select(["nope"])
    with pytest.raises(KeyError, match="no proxy 'nope'"):
        table["nope"]
    with pytest.raises(ValueError, match="proxy 'a' has shape \\(3,\\), expected \\(4,\\)"):
        ProxyTable({"a": np.zeros(3)}, np.zeros(4, dtype=int))


def test_cli_proxies_against_a_run(tmp_path, capsys):
    """`cscore-lab proxies --run DIR` on a small real estimate of noisy digits prints both tables."""
    from cscore_lab.holdout import Estimation
    from cscore_lab.runs import DataSpec

    loaded = DataSpec("digits", label_noise=0.1).load()
    run = tmp_path / "run"
    fast = Recipe(name="fast", hidden=(16,), learning_rate=0.05, batch_size=64, epochs=2)
    Estimation(loaded.dataset, fast, Plan(ratios=(0.5,), runs=4, shard_size=4), out=run, masks=loaded.masks,
               data_spec=loaded.spec.to_dict()).run()
    code = cli.main(["proxies", "--run", str(run), "--families", "dynamics", "knn", "--spaces", "input",
                     "--n-boot", "20", "--bandwidth-scale", "0.5", "--no-progress", "--save", str(tmp_path / "p.npz")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Rank correlation with the C-scores" in out and "cum_accuracy" in out and "knn_input" in out
    assert "Finding the flipped labels" in out and "cscore" in out
    saved = ProxyTable.load(tmp_path / "p.npz")
    assert saved.meta["recipe"]["name"] == "fast" and saved.meta["bandwidth_scale"] == 0.5
    assert ProxyTable.load(run).names == saved.names  # also kept in the run folder, which load() accepts
    # a saved CScores file (or run folder) instead of a run: the data set comes from the options
    assert cli.main(["proxies", "--cscores", str(run), "--label-noise", "0.1", "--families", "knn",
                     "--spaces", "input", "--n-boot", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{run}:" in out and "knn_input" in out and "Finding the flipped labels" in out
    # contradictory options are one-line errors
    assert cli.main(["proxies", "--run", str(run), "--label-noise", "0.1", "--no-progress"]) == 2
    assert "brings its own data set" in capsys.readouterr().err
    assert cli.main(["proxies", "--run", str(run), "--cscores", str(run), "--no-progress"]) == 2
    assert "give one" in capsys.readouterr().err
    assert cli.main(["proxies", "--run", str(run), "--data", str(tmp_path), "--no-progress"]) == 2
    assert "is bundled and reads no --data" in capsys.readouterr().err
