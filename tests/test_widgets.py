"""Widgets: the live run monitor on a real background estimation, and the dashboard's tabs and gallery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

ipywidgets = pytest.importorskip("ipywidgets", reason="ipywidgets is a core dependency; install cscore-lab")

from cscore_lab.viz import widgets as W  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _png(value) -> bytes:
    return bytes(value)


def _tiny_estimation(digits, ratios=(0.4, 0.8), **kwargs):
    """Two-epoch models, two per shard and per ratio: a real run that takes seconds."""
    from cscore_lab.holdout import Estimation
    from cscore_lab.recipes import PRESETS, Plan

    recipe = PRESETS["digits-mlp"].recipe.with_(epochs=2)
    return Estimation(digits, recipe, Plan(ratios=ratios, runs=2, shard_size=2), device="cpu", **kwargs)


def test_monitor_follows_a_background_run(digits):
    est = _tiny_estimation(digits)
    monitor = W.RunMonitor(est, interval=0.0)
    assert monitor.bar.max == 4 and monitor.bar.value == 0
    est.start()
    est.wait(timeout=300)
    assert est.progress.state == "finished"
    assert monitor.bar.value == 4 and monitor.bar.bar_style == "success"
    assert _png(monitor.histogram.value).startswith(PNG)
    assert monitor.redraws == 3  # unthrottled: after each of the 2 shards, and at the end
    assert "4/4 [" in monitor.text() and "finished" in monitor.text()  # tqdm's own meter
    assert f"reliability {est.current().reliability:.3f}" in monitor.status.value
    assert monitor.stop_button.disabled
    bundle = monitor._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["text/plain"] == monitor.text()
    assert "application/vnd.jupyter.widget-view+json" in data


def test_monitor_redraws_the_histogram_at_most_every_interval(digits):
    est = _tiny_estimation(digits)  # never run: the state is set by hand
    monitor = W.RunMonitor(est, interval=3600)
    assert monitor.redraws == 0  # nothing finished yet, nothing to draw
    est.progress.state, est.progress.done_runs = "running", 1
    monitor.update()
    monitor.update()
    assert monitor.redraws == 1 and monitor.bar.value == 1
    est.progress.state = "stopped"  # the end is always drawn
    monitor.update()
    assert monitor.redraws == 2
    monitor.interval = 0.0
    est.progress.state = "running"
    est.progress.partial_runs = 0.5  # progress within a shard moves the bar, not the histogram
    monitor.update()
    assert monitor.redraws == 2 and monitor.bar.value == 1.5
    est.progress.done_runs, est.progress.partial_runs = 2, 0.0  # a shard finished: the estimate changed
    monitor.update()
    assert monitor.redraws == 3


def test_monitor_stop_button_stops_the_run_and_keeps_finished_shards(digits, tmp_path):
    from cscore_lab.backends import LocalBackend

    est = _tiny_estimation(digits, out=tmp_path / "run", backend=LocalBackend(workers=1))  # one shard at a time
    monitor = W.RunMonitor(est)
    stopped = []

    def stop_after_first(e):
        if e.progress.done_runs >= 1 and not stopped:
            stopped.append(e.progress.done_runs)
            monitor.stop_button.click()

    est.add_listener(stop_after_first)
    est.start()
    est.wait(timeout=300)
    assert est.progress.state == "stopped"
    assert est.progress.done_runs == 2
    assert len(list((tmp_path / "run" / "shards").glob("*.npz"))) == 1  # the one finished shard of 2 runs
    assert "stopped" in monitor.text() and monitor.bar.bar_style == "warning"


def test_a_broken_redraw_never_stops_the_run(digits, monkeypatch):
    est = _tiny_estimation(digits, ratios=(0.5,))
    monitor = W.RunMonitor(est, interval=0.0)

    def boom(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(W.plots, "score_histogram", boom)
    est.run()
    assert est.progress.state == "finished"
    assert "monitor error" in monitor.status.value and "drawing failed" in monitor.status.value


# --------------------------------------------------------------------------- gallery and dashboard


@pytest.fixture
def gallery(digits_cscores, digits):
    mask = np.zeros(len(digits), dtype=bool)
    mask[digits_cscores.lowest(5)] = True
    original = (digits.labels + mask) % 10
    return W.Gallery(digits_cscores, digits, masks={"flipped": mask}, original_labels=original, count=12)


def _captions(g):
    return [tile.children[1].description for tile in g.grid.children]


def test_gallery_shows_the_lowest_scores_first_with_label_and_score(gallery, digits_cscores):
    cs = digits_cscores
    assert gallery.shown == list(cs.lowest(12))
    assert len(gallery.grid.children) == 12
    i = gallery.shown[0]
    assert _captions(gallery)[0] == f"{cs.labels[i]} · {cs.scores[i]:.2f}"
    assert all(_png(t.children[0].value).startswith(PNG) for t in gallery.grid.children)
    assert gallery.grid.children[0].children[1].button_style == "danger"  # flipped label marked


def test_gallery_class_order_and_range_controls(gallery, digits_cscores):
    cs = digits_cscores
    before = [_png(t.children[0].value) for t in gallery.grid.children]
    gallery.class_select.value = 7
    assert set(cs.labels[gallery.shown]) == {7}
    assert [_png(t.children[0].value) for t in gallery.grid.children] != before
    scores = cs.scores[gallery.shown]
    assert np.all(np.diff(scores) >= 0)
    gallery.order.value = "highest"
    assert np.all(np.diff(cs.scores[gallery.shown]) <= 0)
    assert gallery.score_range.disabled
    gallery.order.value = "range"
    assert not gallery.score_range.disabled
    gallery.score_range.value = (0.5, 0.7)
    s = cs.scores[gallery.shown]
    assert s.size and np.all((s >= 0.5) & (s <= 0.7))
    gallery.count.value = 4
    assert len(gallery.grid.children) == len(gallery.shown) <= 4


def test_choosing_an_image_shows_profile_neighbours_and_flip(gallery, digits_cscores, digits):
    cs = digits_cscores
    flipped = gallery.shown[0]
    gallery.grid.children[0].children[1].click()
    assert gallery.selected == flipped
    text = gallery.detail.children[0].value
    assert f"C-score <b>{cs.scores[flipped]:.3f}</b>" in text
    assert "flipped label" in text and f"(was {(digits.labels[flipped] + 1) % 10})" in text
    neighbours = gallery.detail.children[3].children
    assert len(neighbours) == 6
    # the neighbours are the nearest inputs (brute force) and their labels are shown
    d = ((digits.inputs - digits.inputs[flipped]) ** 2).sum(axis=1)
    d[flipped] = np.inf
    nearest = np.argsort(d, kind="stable")[:6]
    shown_labels = [n.children[1].value.split(">")[1].split("<")[0] for n in neighbours]
    assert shown_labels == [str(cs.labels[j]) for j in nearest]
    clean = next(i for i in gallery.shown if not gallery.noise_mask[i])
    gallery.select(clean)
    assert "label not flipped" in gallery.detail.children[0].value


def test_gallery_without_mask_says_flip_unknown(digits_cscores, digits):
    g = W.Gallery(digits_cscores, digits, count=4)
    assert "unknown (no noise mask)" in g.detail.children[0].value
    with pytest.raises(ValueError, match="1796 examples"):
        W.Gallery(digits_cscores, digits.subset(np.arange(1796)))


def test_dashboard_has_five_tabs_built_from_real_figures(digits_cscores, digits):
    from cscore_lab.analysis import correlate

    rng = np.random.default_rng(0)
    proxies = pd.DataFrame({"good": digits_cscores.scores + rng.normal(0, 0.05, len(digits)),
                            "noise": rng.normal(size=len(digits))})
    corr = correlate(dict(proxies.items()), digits_cscores, n_boot=20)
    d = W.Dashboard(digits_cscores, digits, proxies=proxies, correlations=corr)
    assert d.titles == ("Distribution", "Agreement", "Ratios", "Memorization", "Gallery", "Uses")
    assert _png(d.distribution.overall.value).startswith(PNG) and _png(d.distribution.per_class.value).startswith(PNG)
    assert "below 0.5" in d.distribution.summary.value
    assert "good" in d.agreement.table.value and "noise" in d.agreement.table.value
    first = _png(d.agreement.scatter.value)
    d.agreement.proxy_select.value = "noise"
    assert _png(d.agreement.scatter.value).startswith(PNG) and _png(d.agreement.scatter.value) != first
    before = _png(d.ratios.figure.value)
    d.ratios.groups.value = 3
    assert _png(d.ratios.figure.value) != before
    assert isinstance(d.gallery, W.Gallery)


def test_dashboard_without_proxies_or_data_explains_what_is_missing(digits_cscores):
    d = W.Dashboard(digits_cscores)
    assert "%cscore proxies" in d.agreement.children[0].value
    assert "needs the data set" in d.gallery.value
    assert "%cscore memorization" in d.memorization.children[0].value


# --------------------------------------------------------------------------- memorization and influence


@pytest.fixture(scope="module")
def tiny_tables(tiny_run):
    """The real run's scores, data set, memorization and influence on its own training examples (k=4)."""
    from cscore_lab.runs import open_run

    run = open_run(tiny_run[0])
    return run.cscores, run.dataset, run.memorization(), run.influence(k=4)


def _tile_texts(box):
    return [t.children[1].description for t in box.children]


def test_memorization_tab_shows_summary_scatter_and_the_most_memorized(tiny_tables):
    cs, ds, mem, _ = tiny_tables
    mask = np.zeros(len(ds), dtype=bool)
    top = mem.most_memorized(16)
    mask[top[:3]] = True
    d = W.Dashboard(cs, ds, memorization=mem, masks={"flipped": mask})
    view = d.memorization
    assert d.children[3] is view
    s = mem.summary()
    assert f"mean memorization <b>{s['mean_memorization']:.3f}</b>" in view.summary.value
    assert f"{s['models']} models" in view.summary.value
    assert _png(view.scatter.value).startswith(PNG)
    assert view.shown == [int(i) for i in top]
    assert _tile_texts(view.examples) == [f"{ds.class_names[cs.labels[i]]} · {mem.memorization[i]:.2f}" for i in top]
    first = view.examples.children[0]
    assert _png(first.children[0].value).startswith(PNG)
    assert f"C {cs.scores[top[0]]:.2f}" in first.children[2].value
    assert [t.children[1].button_style for t in view.examples.children[:4]] == ["danger"] * 3 + [""]
    view.count.value = 8
    assert len(view.examples.children) == 8 and view.shown == [int(i) for i in top[:8]]
    # a click opens the example in the gallery, with its memorization in the detail
    i = view.shown[5]
    view.examples.children[5].children[1].click()
    assert d.selected_index == 4 and d.gallery.selected == i
    detail = d.gallery.detail.children[0].value
    assert f"memorization <b>{mem.memorization[i]:.3f} ± {mem.stderr[i]:.3f}</b>" in detail


def test_memorization_tab_without_images_is_a_table(tiny_tables):
    cs, _, mem, _ = tiny_tables
    view = W.MemorizationView(mem, cs, count=4)
    html = view.examples.children[0].value
    assert html.count("<tr>") == 5 and "heldout_accuracy" in html and "cscore" in html


def _detail_sections(gallery):
    """{caption: widget after it} of the gallery detail's labelled sections."""
    kids = gallery.detail.children
    return {kids[k].value: kids[k + 1] for k in range(len(kids) - 1) if isinstance(kids[k], W.W.HTML)
            and kids[k].value.startswith("<i>")}


def test_gallery_detail_shows_what_an_example_depends_on_and_what_depends_on_it(tiny_tables):
    cs, ds, mem, infl = tiny_tables
    g = W.Gallery(cs, ds, memorization=mem, influence=infl, count=8)
    j = int(np.flatnonzero((infl.top_index >= 0).any(axis=1) & np.isin(np.arange(len(ds)), infl.top_index))[0])
    g.select(j)
    sections = _detail_sections(g)
    depends = next(w for k, w in sections.items() if "depends on most" in k)
    frame = infl.for_example(j)
    texts = [t.children[1].value for t in depends.children]
    assert len(texts) == min(len(frame), 6)
    for text, row in zip(texts, frame.itertuples()):
        assert f"title='#{int(row.train_index)}'" in text and f"{row.influence:+.2f}" in text
        assert ("#1b5e20" in text) == (row.train_label == cs.labels[j])  # green: same label
    # the examples that depend on j: every kept list that holds j, strongest first (brute force)
    helped = sorted(((infl.top_value[t, q], t) for t in range(len(ds)) for q in range(infl.k)
                     if infl.top_index[t, q] == j), key=lambda vt: (-vt[0], vt[1]))[:6]
    dependents = next(w for k, w in sections.items() if "depend on it most" in k)
    assert [int(t.children[1].value.split("title='#")[1].split("'")[0]) for t in dependents.children] == \
        [t for _, t in helped]


def test_gallery_detail_with_evaluation_targets_shows_their_images(digits_cscores, digits):
    from cscore_lab.influence import Influence

    test = digits.subset(np.arange(10), name="test")  # one of each digit
    top = np.full((10, 2), -1)
    top[:3] = [[5, 1], [2, -1], [7, 5]]
    value = np.where(top >= 0, 0.0, np.nan)
    value[:3] = [[0.2, 0.1], [0.3, np.nan], [0.4, 0.35]]
    infl = Influence(top_index=top, top_value=value, top_stderr=np.where(top >= 0, 0.05, np.nan),
                     train_labels=digits.labels, eval_labels=test.labels, ratios=(0.5,), models_per_ratio=(8,))
    g = W.Gallery(digits_cscores, digits, influence=infl, eval_dataset=test, count=4)
    g.select(5)
    sections = _detail_sections(g)
    assert not any("depends on most" in k for k in sections)  # targets are the evaluation set
    (tiles,) = [w for k, w in sections.items() if "evaluation examples that depend" in k]
    assert [t.children[1].value.split("title='#")[1].split("'")[0] for t in tiles.children] == ["2", "0"]
    assert "+0.35" in tiles.children[0].children[1].value and "±0.05" in tiles.children[0].children[1].value
    assert _png(tiles.children[0].children[0].value) == plots_image(test.images[2])
    g.select(3)
    assert "not in the top 2 of any evaluation example" in str(g.detail.children[-1].value)
    with pytest.raises(ValueError, match="the evaluation set 'test' has 20 examples, the influence table 10"):
        W.Gallery(digits_cscores, digits, influence=infl, eval_dataset=digits.subset(np.arange(20), name="test"))
    with pytest.raises(ValueError, match="influence table is of 1797 training examples, the data set has 1796"):
        W.Gallery(digits_cscores.__class__(digits_cscores.scores[:-1], digits.labels[:-1]),
                  digits.subset(np.arange(1796)), influence=infl)


def plots_image(image):
    return W.plots.image_png(image, size=48)


def test_views_refuse_tables_of_other_examples(tiny_tables, digits_cscores, digits):
    mem = tiny_tables[2]
    short = digits.subset(np.arange(100))
    with pytest.raises(ValueError, match="memorization table has 1797 examples, the C-scores 100"):
        W.MemorizationView(mem, digits_cscores.__class__(digits_cscores.scores[:100], digits.labels[:100]))
    with pytest.raises(ValueError, match="memorization table has 1797 examples, the data set 'digits\\[100\\]' 100"):
        W.Gallery(digits_cscores.__class__(digits_cscores.scores[:100], digits.labels[:100]), short, memorization=mem)


def test_session_dashboard_computes_memorization_from_the_runs_models(tiny_run, tmp_path, digits_cscores, digits):
    import shutil

    from cscore_lab.runs import open_run
    from cscore_lab.session import Analysis, CScoreSession

    folder = tmp_path / "run"
    shutil.copytree(tiny_run[0], folder)
    s = CScoreSession(device="cpu", run_root=tmp_path)
    s.load(folder)
    d = s.dashboard()
    expected = open_run(folder).memorization()
    np.testing.assert_array_equal(d.memorization.memorization.memorization, expected.memorization)
    assert s.analysis().memorization is d.memorization.memorization and (folder / "memorization.npz").is_file()
    assert d.gallery.influence is None
    kept = s.analysis().memorization
    assert s.dashboard().memorization.memorization is kept  # the same models: not computed again
    infl = s.influence(k=3)
    d = s.dashboard()
    assert d.gallery.influence is infl
    assert any("depends on most" in k for k in _detail_sections(d.gallery))
    g = s.gallery(count=4)
    assert g.memorization is kept and g.influence is infl
    # scores without models behind them: the tab says how memorization is obtained
    s.analyses["published"] = Analysis(digits, cscores=digits_cscores)
    d = s.dashboard("published")
    assert d.memorization.memorization is None and "%cscore memorization" in d.memorization.children[0].value
