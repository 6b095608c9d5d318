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


# --------------------------------------------------------------------------- memorization and influence


def _memorization(n_in_correct, n_out_correct, *, models=4):
    """A Memorization from hand-set counts at one ratio: ``models`` models on each side of every example."""
    from cscore_lab.memorization import Memorization

    n = len(n_in_correct)
    full = np.full((1, n), models)
    return Memorization(labels=np.arange(n) % 3, ratios=(0.5,), in_counts=full, in_correct=np.array([n_in_correct]),
                        out_counts=full, out_correct=np.array([n_out_correct]))


def _influence(top_index, top_value, *, train_labels, eval_labels, target="eval"):
    from cscore_lab.influence import Influence

    top_index = np.asarray(top_index)
    value = np.where(top_index >= 0, np.asarray(top_value, dtype=float), np.nan)
    return Influence(top_index=top_index, top_value=value, top_stderr=np.where(top_index >= 0, 0.05, np.nan),
                     train_labels=np.asarray(train_labels), eval_labels=np.asarray(eval_labels), ratios=(0.5,),
                     models_per_ratio=(8,), target=target)


def test_memorization_plots_return_the_ax_they_were_given(digits):
    mem = _memorization([4, 4, 2, 0], [0, 4, 1, 0])
    infl = _influence([[2, 0], [1, -1]], [[0.5, 0.25], [0.4, 0]], train_labels=[0, 1, 0, 1], eval_labels=[0, 1])
    calls = [
        (plots.memorization_scatter, (mem, np.array([0.0, 1.0, 0.25, 0.0])), {}),
        (plots.influence_bars, (infl.for_example(0),), {}),
        (plots.influence_pairs, (infl.pairs(0.3), digits.images[:4], digits.images[4:6]), {}),
    ]
    for fn, args, kwargs in calls:
        _, ax = plt.subplots()
        assert fn(*args, ax=ax, **kwargs) is ax, fn.__name__
        assert ax.has_data() or ax.images, f"{fn.__name__} drew nothing"


def test_memorization_scatter_draws_every_example_once_with_injected_ones_on_top():
    # memorization = (in_correct - out_correct) / 4: 1, 0, 0.25, 0, -0.25
    mem = _memorization([4, 4, 2, 0, 1], [0, 4, 1, 0, 2])
    np.testing.assert_allclose(mem.memorization, [1, 0, 0.25, 0, -0.25])
    cscores = np.array([0.0, 1.0, 0.3, 0.1, 0.6])
    flipped = np.array([True, False, False, False, False])
    ood = np.array([False, False, False, True, False])
    ax = plots.memorization_scatter(mem, cscores, masks={"flipped": flipped, "ood": ood})
    clean, red, orange = ax.collections
    np.testing.assert_allclose(clean.get_offsets(), np.c_[cscores, mem.memorization][[1, 2, 4]])
    np.testing.assert_allclose(red.get_offsets(), [[0.0, 1.0]])
    np.testing.assert_allclose(orange.get_offsets(), [[0.1, 0.0]])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["fitted whenever trained on", "clean (3)", "flipped label (1)", "out-of-distribution input (1)"]
    diagonal = ax.lines[0]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [1, 0]
    assert ax.get_ylim()[0] < -0.25 and ax.get_xlabel().startswith("C-score")
    plain = plots.memorization_scatter(mem.memorization, cscores)  # arrays work too; one collection, no marks
    assert len(plain.collections) == 1 and len(plain.collections[0].get_offsets()) == 5


def test_influence_bars_draw_the_for_example_frame_strongest_on_top():
    infl = _influence([[3, 1, 0, -1]], [[0.6, 0.3, -0.1, 0]], train_labels=[0, 1, 0, 0], eval_labels=[0])
    frame = infl.for_example(0)
    ax = plots.influence_bars(frame, class_names=["zero", "one"])
    bars = sorted(ax.patches, key=lambda b: -b.get_y())  # top first
    np.testing.assert_allclose([b.get_width() for b in bars], [0.6, 0.3, -0.1])
    ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())), reverse=True)
    assert [text for _, text in ticks] == ["#3 (zero)", "#1 (one)", "#0 (zero)"]
    green, red = matplotlib_rgba("C2"), matplotlib_rgba("C3")
    assert [tuple(b.get_facecolor()[:3]) for b in bars] == [green, red, green]  # same label as the target: green
    assert "#0" in ax.get_title() and "zero" in ax.get_title()


def matplotlib_rgba(name):
    from matplotlib.colors import to_rgb

    return tuple(to_rgb(name))


def test_influence_pairs_show_each_training_example_above_its_target(digits):
    infl = _influence([[2, 0], [1, -1], [3, 2]], [[0.5, 0.2], [0.4, 0], [0.3, 0.1]], train_labels=[0, 1, 0, 1],
                      eval_labels=[0, 1, 1])
    mem = _memorization([4, 4, 2, 0], [0, 4, 1, 0])
    pairs = infl.pairs(0.25, memorization=mem)
    assert list(pairs.train_index) == [2, 1, 3]
    ax = plots.influence_pairs(pairs, digits.images[:4], digits.images[10:13], max_pairs=2)
    captions = [t.get_text() for t in ax.texts]
    assert captions == ["0 m0.25", "1 m0.00", "0 +0.50", "1 +0.40"]  # top row: training; bottom: targets
    canvas = ax.images[0].get_array()
    top_left = canvas[: digits.images.shape[1], : digits.images.shape[2]]
    np.testing.assert_allclose(top_left, digits.images[2] / 255.0)
    empty = plots.influence_pairs(pairs.iloc[:0], digits.images[:4])
    assert "no pairs" in empty.texts[0].get_text()


def test_memorization_plots_reject_bad_arguments(digits):
    mem = _memorization([4, 4], [0, 4])
    with pytest.raises(ValueError, match="memorization has 2 values, the C-scores 3"):
        plots.memorization_scatter(mem, np.zeros(3))
    with pytest.raises(ValueError, match="mask 'flipped' has shape"):
        plots.memorization_scatter(mem, np.zeros(2), masks={"flipped": np.zeros(5, bool)})
    with pytest.raises(ValueError, match="influence_bars needs a frame with columns"):
        plots.influence_bars(pd.DataFrame({"influence": [0.1]}))
    with pytest.raises(ValueError, match="influence_pairs needs a frame with columns"):
        plots.influence_pairs(pd.DataFrame({"influence": [0.1]}), digits.images[:2])
    infl = _influence([[1, -1]], [[0.5, 0]], train_labels=[0, 1], eval_labels=[0])
    with pytest.raises(ValueError, match="max_pairs must be a positive integer"):
        plots.influence_pairs(infl.pairs(0.1), digits.images[:2], max_pairs=0)
    with pytest.raises(ValueError, match="beyond the 1 training"):
        plots.influence_pairs(infl.pairs(0.1), digits.images[:1])
