"""cscore_lab: consistency scores (C-scores) of labeled examples, their cheap proxies, and views of both.

``import cscore_lab`` works without IPython; ``%load_ext cscore_lab`` adds the ``%cscore`` magics.
"""

__version__ = "0.1.0"

from .cscores import CScores  # noqa: E402
from .data import Dataset, from_arrays, from_huggingface, from_torch, inject_label_noise, load_dataset  # noqa: E402
from .recipes import PRESETS, Plan, Recipe  # noqa: E402


_LAZY = {
    "estimate": "holdout", "Estimation": "holdout",
    "compute_proxies": "proxies.suite", "ProxyTable": "proxies.suite",
    "correlate": "analysis", "detect_label_noise": "analysis", "detect_injected": "analysis",
    "load_published": "published", "open_run": "runs", "DataSpec": "runs", "CScoreSession": "session",
    "inject_ood": "ood", "OOD_KINDS": "ood",
    "curriculum_experiment": "uses", "pruning_experiment": "uses", "active_collection_experiment": "uses",
    "low_score_regions": "uses", "CurriculumSampler": "uses",
}


def __getattr__(name: str):
    # these pull in torch, numba or scipy: import them only when asked for
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'cscore_lab' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext cscore_lab``: register the ``%cscore`` magics (imported lazily)."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


__all__ = ["CScores", "Dataset", "Plan", "Recipe", "PRESETS", "from_arrays", "from_torch", "from_huggingface",
           "inject_label_noise", "load_dataset",
           "__version__", *_LAZY]
