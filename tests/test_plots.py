"""Figures: every plot draws real matplotlib artists on the given ax (Agg), returns it, and shows what it claims."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cscore_lab.viz import plots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_every_plot_returns_the_ax_it_was_given(digits_cscores, digits):
    cs = digits_cscores
    proxy = cs.scores + np.random.default_rng(0).normal(0, 0.05, len(cs))
    from cscore_lab.analysis import correlate

    table = correlate({"p": proxy, "q": -proxy}, cs, n_boot=20)
    calls = [
        (plots.score_histogram, (cs,), {}),
        (plots.class_distributions, (cs,), {"class_names": digits.class_names}),
        (plots.consistency_profiles, (cs,), {}),
        (plots.example_profile, (cs, 5), {}),
        (plots.proxy_scatter, (proxy, cs), {"name": "p"}),
        (plots.flipped_histogram, (cs, np.arange(len(cs)) % 10 == 0), {}),
        (plots.image_grid, (digits.images[:10],), {"captions": [str(i) for i in range(10)]}),
        (plots.correlation_heatmap, (pd.DataFrame([[0.5, -0.2]], index=["p"], columns=["all", "0"]),), {}),
        (plots.correlation_heatmap, (table,), {}),
        (plots.correlation_intervals, (table,), {}),
        (plots.consistency_profiles, (cs.profiles(3, "quantile"),), {}),
    ]
    for fn, args, kwargs in calls:
        fig, ax = plt.subplots()
        assert fn(*args, ax=ax, **kwargs) is ax, fn.__name__
        assert ax.figure is fig
        assert ax.has_data() or ax.images or ax.texts, f"{fn.__name__} drew nothing"


def test_without_ax_a_new_pyplot_figure_is_made(digits_cscores):
    before = plt.get_fignums()
    ax = plots.score_histogram(digits_cscores)
    assert ax.figure.number not in before


def test_histogram_counts_every_finite_score_and_reports_the_share_below_half():
    scores = np.array([0.1, 0.2, 0.45, 0.7, 0.9, 0.95, np.nan])
    ax = plots.score_histogram(scores, bins=10)
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 6
    assert any("50.0% below 0.5" in t.get_text() for t in ax.texts)


def test_class_distributions_annotate_each_class_share(digits_cscores, digits):
    ax = plots.class_distributions(digits_cscores, class_names=digits.class_names)
    shares = [t.get_text() for t in ax.texts]
    assert len(shares) == 10
    labels, scores = digits_cscores.labels, digits_cscores.scores
    expected = f"{100 * (scores[labels == 0] < 0.5).mean():.0f}%"
    assert shares[0] == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == list(digits.class_names)


def test_consistency_profiles_are_group_means_of_per_ratio_accuracy(digits_cscores):
    cs = digits_cscores
    ax = plots.consistency_profiles(cs, groups=4, binning="score")
    edges = np.linspace(0, 1, 5)
    group = np.clip(np.searchsorted(edges, cs.scores, side="right") - 1, 0, 3)
    drawn = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    for g in range(4):
        sel = group == g
        if not sel.any():
            continue
        label = [k for k in drawn if k.startswith(f"{edges[g]:.2f}")][0]
        assert label.endswith(f"({int(sel.sum())})")
        np.testing.assert_allclose(drawn[label], np.nanmean(cs.per_ratio[:, sel], axis=1))


def test_consistency_profiles_quantile_groups_are_about_equal(digits_cscores):
    ax = plots.consistency_profiles(digits_cscores, groups=4, binning="quantile")
    sizes = [int(line.get_label().rsplit("(", 1)[1].rstrip(")")) for line in ax.get_lines()]
    assert sum(sizes) == len(digits_cscores)
    assert max(sizes) - min(sizes) < 0.1 * len(digits_cscores)


def test_plots_reject_bad_arguments_with_clear_messages(digits_cscores):
    with pytest.raises(ValueError, match="binning must be"):
        plots.consistency_profiles(digits_cscores, binning="log")
    with pytest.raises(ValueError, match="outside 0..1796"):
        plots.example_profile(digits_cscores, 5000)
    with pytest.raises(ValueError, match="3 values, the C-scores 1797"):
        plots.proxy_scatter(np.zeros(3), digits_cscores)
    with pytest.raises(ValueError, match=r"shape \[K, H, W\]"):
        plots.image_grid(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        plots.image_grid(np.zeros((3, 4, 4), dtype=np.uint8), captions=["a", "b"])


def test_proxy_scatter_title_shows_the_correlation_it_is_given(digits_cscores):
    x = digits_cscores.scores ** 2 + np.random.default_rng(1).normal(0, 0.01, len(digits_cscores))
    ax = plots.proxy_scatter(x, digits_cscores, name="square", correlation=0.8771)
    assert "Spearman +0.877" in ax.get_title()
    assert "Spearman" not in plots.proxy_scatter(x, digits_cscores, name="square").get_title()  # computes nothing


def test_image_grid_places_every_image_and_caption(digits):
    ax = plots.image_grid(digits.images[:11], captions=[f"c{i}" for i in range(11)], ncols=4,
                          highlight=[i == 2 for i in range(11)])
    assert [t.get_text() for t in ax.texts] == [f"c{i}" for i in range(11)]
    assert len(ax.patches) == 1  # the one highlighted tile
    canvas = ax.images[0].get_array()
    assert canvas.shape[1] > 4 * 8 and canvas.shape[0] > 3 * 8  # 3 rows of 4


def test_correlation_plots_draw_what_the_analysis_table_holds(digits_cscores):
    from cscore_lab.analysis import correlate

    rng = np.random.default_rng(0)
    proxies = {"good": digits_cscores.scores + rng.normal(0, 0.02, len(digits_cscores)),
               "noise": rng.normal(size=len(digits_cscores))}
    table = correlate(proxies, digits_cscores, n_boot=30)
    ax = plots.correlation_intervals(table)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["noise", "good"]  # best at the top
    points = ax.lines[0].get_xdata()
    assert points[-1] == pytest.approx(table.value("good"))
    heat = plots.correlation_heatmap(table)
    assert [t.get_text() for t in heat.get_xticklabels()] == ["all"] + [str(k) for k in range(10)]


def test_consistency_profiles_draw_the_curves_the_scores_computed(digits_cscores):
    prof = digits_cscores.profiles(4, "quantile")
    ax = plots.consistency_profiles(prof)
    drawn = [line.get_ydata() for line in ax.lines]
    kept = [g for g in range(len(prof.counts)) if prof.counts[g]]
    assert len(drawn) == len(kept)
    for line, g in zip(drawn, kept):
        np.testing.assert_allclose(line, prof.curves[g])


def test_render_png_and_image_png_make_png_bytes_without_pyplot(digits_cscores, digits):
    before = plt.get_fignums()
    png = plots.render_png(plots.score_histogram, digits_cscores, figsize=(3, 2))
    assert png.startswith(PNG)
    assert plt.get_fignums() == before  # pyplot never saw the figure
    tile = plots.image_png(digits.images[0], size=64)
    assert tile.startswith(PNG)
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(tile)).size == (64, 64)
