"""Training many models at once: same results as one at a time, seeds, devices, progress, precision."""

import numpy as np
import pytest
import torch

from cscore_lab import trainer
from cscore_lab.data import load_digits
from cscore_lab.recipes import Recipe, get_preset
from cscore_lab.shards import draw_subset
from cscore_lab.trainer import (
    model_seeds,
    predict_correct,
    prepare_inputs,
    resolve_device,
    resolve_precision,
    torch_threads,
    train_group,
    train_one_at_a_time,
)


def _digits_setup(n_models, ratio=0.5, examples=None, **recipe_changes):
    ds = load_digits() if examples is None else load_digits().subset(np.arange(examples))
    recipe = get_preset("digits-mlp").recipe.with_(**recipe_changes)
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    seeds = [model_seeds(7, ratio, r) for r in range(n_models)]
    subsets = [draw_subset(s.subset, len(ds), int(ratio * len(ds))) for s in seeds]
    return ds, recipe, x, y, seeds, subsets


def _heldout_accuracy(correct, subsets, n):
    held = np.ones((len(subsets), n), bool)
    for i, s in enumerate(subsets):
        held[i, s] = False
    return (correct & held).sum(axis=1) / held.sum(axis=1)


def test_stacked_training_is_the_plain_loop_one_model_at_a_time():
    """Same initial weights, same batches: after an epoch every stacked model equals the plain
    nn.Module + torch.optim.SGD loop up to float32 summation order."""
    _, recipe, x, y, seeds, subsets = _digits_setup(4, epochs=1)
    with torch_threads(1):
        group = train_group(x, y, subsets, recipe, seeds, num_classes=10)
        for i in (0, 3):
            net = train_one_at_a_time(x, y, subsets[i], recipe, seeds[i], num_classes=10)
            lins = [m for m in net if isinstance(m, torch.nn.Linear)]
            for layer, lin in enumerate(lins):
                torch.testing.assert_close(group.weights[layer][i], lin.weight.detach(), rtol=1e-4, atol=1e-6)
                torch.testing.assert_close(group.biases[layer][i, 0], lin.bias.detach(), rtol=1e-4, atol=1e-6)


def test_batched_training_matches_one_at_a_time_accuracy():
    """Batching changes speed, not results: held-out accuracy within 1 percentage point on digits."""
    ds, recipe, x, y, seeds, subsets = _digits_setup(8)
    with torch_threads(1):
        batched = _heldout_accuracy(predict_correct(train_group(x, y, subsets, recipe, seeds, num_classes=10), x, y),
                                    subsets, len(ds))
        single = []
        for s, sub in zip(seeds, subsets):
            net = train_one_at_a_time(x, y, sub, recipe, s, num_classes=10)
            with torch.no_grad():
                single.append(_heldout_accuracy(((net(x).argmax(1) == y).numpy())[None], [sub], len(ds))[0])
    assert batched.mean() > 0.9
    assert abs(batched.mean() - np.mean(single)) < 0.01, (batched.mean(), np.mean(single))


def test_bf16_training_reaches_fp32_accuracy():
    """bf16 products, float32 master weights: the held-out accuracy of the same models stays within a point."""
    ds, recipe, x, y, seeds, subsets = _digits_setup(8)
    acc = {}
    with torch_threads(1):
        for precision in ("fp32", "bf16"):
            group = train_group(x, y, subsets, recipe.with_(precision=precision), seeds, num_classes=10)
            assert all(p.dtype == torch.float32 for p in group.params)
            acc[precision] = _heldout_accuracy(predict_correct(group, x, y), subsets, len(ds)).mean()
    assert acc["bf16"] > 0.9
    assert abs(acc["bf16"] - acc["fp32"]) < 0.01, acc


def test_same_seeds_same_models_whatever_the_group():
    """A model's result depends on its own seeds, not on which models share its group."""
    _, recipe, x, y, seeds, subsets = _digits_setup(4, examples=400, epochs=2)
    all4 = train_group(x, y, subsets, recipe, seeds, num_classes=10)
    again = train_group(x, y, subsets, recipe, seeds, num_classes=10)
    for a, b in zip(all4.params, again.params):
        assert torch.equal(a, b)
    last2 = train_group(x, y, subsets[2:], recipe, seeds[2:], num_classes=10)
    torch.testing.assert_close(all4.weights[0][2:], last2.weights[0], rtol=1e-4, atol=1e-5)


def test_progress_reports_steps_through_the_training():
    _, recipe, x, y, seeds, subsets = _digits_setup(2, examples=300, epochs=3, batch_size=32)
    calls = []
    train_group(x, y, subsets, recipe, seeds, num_classes=10, progress=lambda done, total: calls.append((done, total)))
    total = -(-150 // 32) * 3  # 5 steps per epoch (the last one of 22 examples), 3 epochs
    assert calls[-1] == (total, total)
    assert [c[0] for c in calls] == list(range(1, total + 1))  # short runs: every step (at most ~200 reports)
    calls.clear()
    long_recipe = recipe.with_(epochs=60, batch_size=8)  # 19 steps per epoch, 1140 steps: ~200 reports
    train_group(x, y, subsets, long_recipe, seeds, num_classes=10, progress=lambda d, t: calls.append(d))
    assert 150 <= len(calls) <= 250 and calls[-1] == 19 * 60 and calls == sorted(set(calls))


def test_step_and_epoch_hooks_are_called_at_their_cadence():
    class Recorder:
        every_steps = 4

        def __init__(self):
            self.steps, self.epochs = [], []

        def on_step(self, step, group):
            self.steps.append((step, group.num_models))

        def on_epoch_end(self, epoch, group):
            self.epochs.append(epoch)

    class EpochOnly:
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, epoch, group):
            self.epochs.append(epoch)

    _, recipe, x, y, seeds, subsets = _digits_setup(3, examples=300, epochs=3, batch_size=32)
    rec, ep = Recorder(), EpochOnly()
    train_group(x, y, subsets, recipe, seeds, num_classes=10, callbacks=[rec, ep])
    assert rec.steps == [(s, 3) for s in (4, 8, 12)]  # 15 steps in all
    assert rec.epochs == ep.epochs == [1, 2, 3]

    class Bad:
        every_steps = 0

        def on_step(self, step, group):  # pragma: no cover - never called
            pass

    with pytest.raises(ValueError, match="on_step every 0 steps; expected an integer >= 1 or None"):
        train_group(x, y, subsets, recipe, seeds, num_classes=10, callbacks=[Bad()])
    Bad.every_steps = None  # a recorder set to record per epoch only: its on_step is never called
    train_group(x, y, subsets, recipe, seeds, num_classes=10, callbacks=[Bad()])


def test_stop_interrupts_between_steps():
    import threading

    _, recipe, x, y, seeds, subsets = _digits_setup(2, examples=300, epochs=2)
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 3:
            stop.set()

    with pytest.raises(trainer.Interrupted):
        train_group(x, y, subsets, recipe, seeds, num_classes=10, stop=stop, progress=progress)
    assert seen == [1, 2, 3]


def test_epoch_order_blocks_are_each_models_own_permutation():
    """Every step's [M, batch] block is contiguous, and model m's steps of an epoch cover its subset once."""
    subsets = torch.stack([torch.arange(10, 33), torch.arange(100, 123)])  # 23 examples each
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    blocks, tail = trainer._epoch_order(subsets, gens, 5)
    assert blocks.shape == (4, 2, 5) and blocks.is_contiguous() and tail.shape == (2, 3) and tail.is_contiguous()
    for m in range(2):
        seen = torch.cat([blocks[:, m].reshape(-1), tail[m]])
        assert sorted(seen.tolist()) == subsets[m].tolist()
        want = subsets[m][torch.randperm(23, generator=torch.Generator().manual_seed(m + 1))]
        assert torch.equal(seen, want)  # the model's own generator, in order
    blocks, tail = trainer._epoch_order(subsets[:, :20], gens, 5)
    assert blocks.shape == (4, 2, 5) and tail is None


def test_model_seeds_are_distinct_and_stable():
    a = model_seeds(0, 0.3, 5)
    assert a == model_seeds(0, 0.3, 5)
    assert len({a.subset, a.init, a.order}) == 3
    assert a != model_seeds(0, 0.3, 6) and a != model_seeds(1, 0.3, 5) and a != model_seeds(0, 0.4, 5)


def test_subsets_must_share_a_size():
    ds = load_digits().subset(np.arange(100))
    recipe = get_preset("digits-mlp").recipe
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    seeds = [model_seeds(0, 0.5, r) for r in range(2)]
    with pytest.raises(ValueError, match="same size"):
        train_group(x, y, [np.arange(10), np.arange(12)], recipe, seeds, num_classes=10)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' was requested but CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="'cuda:1' was requested"):
            resolve_device("cuda:1")


def test_input_scaling():
    ds = load_digits()
    rec = get_preset("digits-mlp").recipe
    x, _ = prepare_inputs(ds, rec, torch.device("cpu"))
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    xs, _ = prepare_inputs(ds, rec.with_(input_scaling="standardize"), torch.device("cpu"))
    assert abs(float(xs.mean())) < 1e-4
    xn, _ = prepare_inputs(ds, rec.with_(input_scaling="none"), torch.device("cpu"))
    assert float(xn.max()) == 16.0


# ----------------------------------------------------------------------------- precision


def test_recipe_precision_round_trips_and_old_recipes_read_as_fp32():
    r = get_preset("mnist-mlp").recipe.with_(precision="bf16")
    assert Recipe.from_dict(r.to_dict()) == r and r.to_dict()["precision"] == "bf16"
    old = get_preset("mnist-mlp").recipe.to_dict()
    del old["precision"]  # a manifest written before the field existed
    assert Recipe.from_dict(old).precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of .*'auto' is resolved"):
        Recipe(precision="auto")


def test_resolve_precision_on_this_machine():
    cpu = torch.device("cpu")
    mlp = get_preset("mnist-mlp").recipe
    assert resolve_precision("fp32", cpu, mlp) == ("fp32", "fp32: requested")
    precision, reason = resolve_precision("auto", cpu, mlp)
    fast, why = trainer.fast_bf16(cpu)
    print(f"this CPU: fast bf16 {fast} ({why}); auto -> {precision}: {reason}")
    assert precision in ("fp32", "bf16") and reason.startswith(precision + ": ")
    if not fast:
        assert precision == "fp32"
    assert resolve_precision("bf16", cpu, mlp)[0] == "bf16"
    with pytest.raises(ValueError, match="precision must be one of .*got 'fp16'"):
        resolve_precision("fp16", cpu, mlp)


def test_resolve_precision_branches(monkeypatch):
    cpu = torch.device("cpu")
    mlp, cnn = get_preset("mnist-mlp").recipe, get_preset("cifar-cnn").recipe
    monkeypatch.setattr(trainer, "BF16_FIDELITY", {"mlp": True, "cnn": False})
    monkeypatch.setattr(trainer, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert resolve_precision("auto", cpu, mlp) == ("bf16", "bf16: CPU has avx512_bf16; mlp recipes pass the fidelity check")
    assert resolve_precision("auto", cpu, cnn) == ("fp32", "fp32: bf16 fails the fidelity check on cnn recipes")
    precision, reason = resolve_precision("auto", cpu, mlp, model_factory=lambda: torch.nn.Linear(2, 2))
    assert precision == "fp32" and "not been through the fidelity check on custom models" in reason
    monkeypatch.setattr(trainer, "_cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert resolve_precision("auto", cpu, mlp)[1].startswith("bf16: CPU has amx_bf16")
    monkeypatch.setattr(trainer, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    precision, reason = resolve_precision("auto", cpu, mlp)
    assert precision == "fp32" and reason.startswith("fp32: no fast bf16 on this CPU")
    assert resolve_precision("bf16", cpu, mlp)[1].startswith("bf16: requested, but slow here")
    monkeypatch.setattr(trainer, "BF16_FIDELITY", {"mlp": None, "cnn": None})
    monkeypatch.setattr(trainer, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert resolve_precision("auto", cpu, mlp)[0] == "fp32"


def test_resolve_precision_on_cuda_devices(monkeypatch):
    cuda = torch.device("cuda:0")
    mlp = get_preset("mnist-mlp").recipe
    monkeypatch.setattr(trainer, "BF16_FIDELITY", {"mlp": True, "cnn": None})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake H200")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    fast = "bf16: Fake H200 (compute capability 9.0) has bf16 tensor cores; mlp recipes pass the fidelity check"
    assert resolve_precision("auto", cuda, mlp) == ("bf16", fast)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    no_fast = "fp32: Fake H200 (compute capability 7.0) has no fast bf16 (needs 8.0 or newer)"
    assert resolve_precision("auto", cuda, mlp) == ("fp32", no_fast)
    with pytest.raises(ValueError, match="'bf16' was requested but Fake H200"):
        resolve_precision("bf16", cuda, mlp)


# ----------------------------------------------------------------------------- the GPU benchmark's code paths


def _load_benchmark(name):
    import importlib.util
    from pathlib import Path

    import sys

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # as `python benchmarks/<name>.py` has it: the benchmarks share _common.py
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def test_bench_gpu_code_paths_run_on_cpu(capsys):
    """No GPU is lent here: the benchmark says so, and what it times runs on the CPU (tiny sizes)."""
    from cscore_lab.data import from_arrays
    from cscore_lab.recipes import Plan

    bench = _load_benchmark("bench_gpu")
    if bench.no_gpu_reason() is not None:
        assert bench.main([]) == 0
        assert "no CUDA GPU here" in capsys.readouterr().out
    rng = np.random.default_rng(0)
    mnist = from_arrays(rng.integers(0, 256, (300, 28, 28)).astype(np.uint8), np.arange(300) % 10, name="mnist-shaped")
    plan = Plan(ratios=(0.5,), runs=2, shard_size=2)
    for variant in ("fp32", "bf16"):
        row = bench.measure_protocol(mnist, variant, plan, torch.device("cpu"), epochs=1)
        assert row["models"] == 2 and row["models_per_s"] > 0 and row["tflops"] > 0
    cifar = from_arrays(rng.integers(0, 256, (40, 3, 32, 32)).astype(np.uint8), np.arange(40) % 10, name="cifar-shaped")
    row = bench.measure_cnn_shard(cifar, "bf16", 2, torch.device("cpu"), epochs=1)
    assert row["models"] == 2 and row["seconds"] > 0
    # the flop counts, by hand: MLP 784-512-256-10 (P = 535,040; first layer 401,408), one example, one epoch
    assert bench.mlp_model_flops([784, 512, 256, 10], 1, 1, 1) == 6 * 535_040 - 2 * 401_408 + 2 * 535_040
    fwd = 2 * (3 * 9 * 32 * 32 * 32 + 32 * 9 * 64 * 16 * 16 + 64 * 9 * 128 * 8 * 8) + 2 * 128 * 10
    assert bench.cnn_model_flops((32, 64, 128), 1, 1, 1) == 3 * fwd - 2 * 3 * 9 * 32 * 32 * 32 + fwd
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with bench.precision_flags("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
