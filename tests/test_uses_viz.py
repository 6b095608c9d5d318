"""The figures of the uses experiments draw what the results hold, on the given ax, and compute nothing."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cscore_lab.uses import CollectionResult, CurriculumResult, PruningResult, low_score_regions
from cscore_lab.viz import uses as figs


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _curriculum():
    rng = np.random.default_rng(0)
    correct = rng.integers(50, 100, size=(3, 4, 5))
    return CurriculumResult(("curriculum", "random", "weighted-easy"), np.array([0, 10, 20, 30, 40]), correct, 100, "cscore")


def test_curriculum_curves_draw_one_line_and_band_per_strategy():
    res = _curriculum()
    _, ax = plt.subplots()
    assert figs.curriculum_curves(res, ax=ax) is ax
    assert len(ax.lines) == 3 and len(ax.collections) == 3
    x, y = ax.lines[1].get_data()
    assert np.array_equal(x, [0, 10, 20, 30, 40]) and np.allclose(y, res.accuracy[1].mean(0))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(res.strategies)
    ax2 = figs.curriculum_curves(res, strategies=["random"])
    assert len(ax2.lines) == 1
    with pytest.raises(KeyError, match="strategy"):
        figs.curriculum_curves(res, strategies=["anti-curriculum"])


def test_pruning_curves_draw_each_configuration_and_the_reference():
    correct = np.random.default_rng(1).integers(60, 100, size=(3, 2, 3))
    res = PruningResult((("cscore", "most_regular"), ("cscore", "least_regular"), ("random", "random")),
                        np.array([0.3, 0.6]), np.array([30, 60]), correct, np.array([95, 97, 96]), 100,
                        {"settings": {"budget": "steps"}})
    _, ax = plt.subplots()
    assert figs.pruning_curves(res, ax=ax) is ax
    assert len(ax.containers) == 3  # one errorbar per curve
    assert np.allclose(ax.containers[2].lines[0].get_ydata(), res.accuracy[2].mean(1))
    assert any(np.allclose(line.get_ydata(), 0.96) for line in ax.lines)  # the whole-training-set line
    assert "budget: steps" in ax.get_title()
    assert len(figs.pruning_curves(res, configs=[("random", "random")], reference=False).containers) == 1


def test_collection_curves_and_region_bars():
    correct = np.random.default_rng(2).integers(60, 100, size=(2, 3, 2))
    res = CollectionResult(("lowest", "random"), np.array([0, 50, 100]), np.array([100, 150, 200]), correct, 100)
    ax = figs.collection_curves(res)
    assert len(ax.lines) == 2 and np.array_equal(ax.lines[0].get_xdata(), [0, 50, 100])
    table = low_score_regions(np.array([0.1, 0.9, 0.4, 0.8, 0.3, 0.95]), np.array([0, 0, 0, 1, 1, 1]))
    _, ax = plt.subplots()
    assert figs.region_bars(table, ax=ax) is ax
    assert [round(p.get_width(), 6) for p in ax.patches] == [round(2 / 3, 6), round(1 / 3, 6)]
    assert [t.get_text().strip() for t in ax.texts] == ["2/3", "1/3"]
    with pytest.raises(ValueError, match="cluster"):
        figs.region_bars(table, kind="cluster")


def test_display_module_is_separate_from_compute():
    import subprocess
    import sys

    code = ("import sys, cscore_lab.uses; "
            "assert 'matplotlib' not in sys.modules and 'ipywidgets' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
