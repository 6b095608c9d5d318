"""What the recorders compute from a group of stacked models: per-record logit summaries and per-example gradients.

Torch code, called by the training callbacks of :mod:`.recorders` on the M models of a
:func:`cscore_lab.trainer.train_group` group; every function returns one value per (model,
example), in float32 on the training device:

* :func:`summarise_logits`: label logit, largest other logit and log p(label), the three numbers a
  training record keeps for AUM, data maps, Data-IQ and the final loss/margin;
* :func:`error_norms`: EL2N's ``||softmax - onehot||_2``;
* :func:`gradient_norms`: GraNd's exact per-example norm of the loss gradient w.r.t. all parameters;
* :func:`input_gradients`: VoG's gradient of the label logit w.r.t. the input.

:class:`~cscore_lab.models.StackedMLP` groups take exact batched formulas (no per-example
gradient is ever formed); any other group (:class:`~cscore_lab.models.StackedModules`: the CNN
preset, a user's ``model_factory``) goes through ``torch.func``. Both are tested against
per-example autograd.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from ..models import EVAL_CHUNK, StackedMLP, StackedModules

__all__ = ["summarise_logits", "error_norms", "gradient_norms", "input_gradients"]

_GRAD_BUDGET = 1 << 28  # bytes of per-example parameter gradients held at once (generic models)


def _label_index(logits, y):
    return y.view(1, -1, 1).expand(logits.shape[0], -1, 1)


def summarise_logits(logits, y):
    """(label logit, largest other logit, log p(label)), each [M, n] float32, from logits [M, n, C].

    The log-sum-exp is taken in float64, so a learned example's tiny loss keeps its digits; the
    largest *other* logit masks the label's entry, so a tie with another class gives margin 0.
    """
    logits = logits.double()
    idx = _label_index(logits, y)
    label = logits.gather(-1, idx).squeeze(-1)
    other = logits.scatter(-1, idx, float("-inf")).amax(dim=-1)
    logprob = (label - torch.logsumexp(logits, dim=-1)).clamp_max_(0.0)
    return label.float(), other.float(), logprob.float()


def _error_vector(logits, y):
    """softmax - onehot [M, n, C] with the label entry as minus the other classes' mass (no cancellation)."""
    p = logits.float().softmax(dim=-1)
    idx = _label_index(p, y)
    p = p.scatter(-1, idx, 0.0)
    return p.scatter(-1, idx, -p.sum(dim=-1, keepdim=True))


def _group_kind(group) -> str:
    if isinstance(group, StackedMLP):
        return "mlp"
    if isinstance(group, StackedModules):
        return "modules"
    raise TypeError(f"per-example gradients need a StackedMLP or StackedModules group, got {type(group).__name__}")


def _mlp_forward(group, xc):
    """Inputs of every layer ([n, d] for the first, then [M, n, h]) and the logits [M, n, C]."""
    acts = [xc]
    h = xc
    for w, b in zip(group.weights[:-1], group.biases[:-1]):
        h = torch.matmul(h, w.transpose(1, 2)).add_(b).relu_()
        acts.append(h)
    return acts, torch.matmul(h, group.weights[-1].transpose(1, 2)).add_(group.biases[-1])


def _mlp_chunks(group, x, y):
    """``(acts, logits, labels)`` of :func:`_mlp_forward` for consecutive chunks of ``EVAL_CHUNK`` examples."""
    for xc, yc in zip(x.split(EVAL_CHUNK), y.split(EVAL_CHUNK)):
        yield (*_mlp_forward(group, xc), yc)


def _modules_logits(group, params, x):
    """Logits [M, n, C] of a StackedModules group on per-model inputs ``x`` [M, n, ...], differentiable in ``x``."""
    def call(p, b, xi):
        return functional_call(group.base, (p, b), (xi,))

    return vmap(call)(params, group.buffers, x)


def error_norms(group, x, y):
    """EL2N's ``||softmax(f(x)) - onehot(y)||_2`` of every model on every example: torch float32 [M, N].

    ``1 - p(label)`` is summed from the other classes' probabilities, so a learned example's
    tiny norm keeps its relative precision.
    """
    with torch.no_grad():
        return torch.linalg.vector_norm(_error_vector(group.logits(x), y), dim=-1)


def gradient_norms(group, x, y):
    """Exact per-example norms of the cross-entropy gradient w.r.t. all parameters: torch float32 [M, N].

    For :class:`~cscore_lab.models.StackedMLP` this is exact and cheap: the gradient of a
    layer with input ``a`` and back-propagated error ``delta`` (d loss / d pre-activation) is
    the outer product ``delta a^T`` for the weights and ``delta`` for the bias, so its squared
    norm is ``||delta||^2 (||a||^2 + 1)``; summing over layers needs one batched backward
    pass and no per-example gradient is ever formed. For any other architecture
    (:class:`~cscore_lab.models.StackedModules`) per-example gradients are computed with
    ``torch.func`` (``vmap`` over models of ``vmap`` over examples of ``grad``) in chunks that
    hold at most 256 MB of gradients. The loss is one example's cross-entropy (not divided by a
    batch size); weight decay is not part of it. BatchNorm layers (switched to batch statistics
    in stacked groups) see each example alone.
    """
    out = []
    if _group_kind(group) == "mlp":
        with torch.no_grad():
            for acts, logits, yc in _mlp_chunks(group, x, y):
                delta = _error_vector(logits, yc)
                sq = torch.zeros(delta.shape[:2], device=x.device)
                for layer in reversed(range(len(group.weights))):
                    a = acts[layer]
                    sq += delta.square().sum(dim=-1) * (a.square().sum(dim=-1) + 1.0)
                    if layer > 0:
                        delta = torch.bmm(delta, group.weights[layer]) * (a > 0)
                out.append(sq.sqrt_())
        return torch.cat(out, dim=1)

    params = {k: v.detach() for k, v in group.params.items()}
    per_model = sum(v[0].numel() for v in params.values())
    chunk = int(max(1, min(1024, _GRAD_BUDGET // (4 * group.num_models * per_model))))

    def loss(p, b, xi, yi):
        return torch.nn.functional.cross_entropy(functional_call(group.base, (p, b), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example = vmap(vmap(grad(loss), in_dims=(None, None, 0, 0)), in_dims=(0, 0, None, None))
    for xc, yc in zip(x.split(chunk), y.split(chunk)):
        grads = per_example(params, group.buffers, xc, yc)  # name -> [M, n, *shape]
        sq = sum(g.reshape(g.shape[0], g.shape[1], -1).square().sum(dim=-1) for g in grads.values())
        out.append(sq.sqrt().detach())
    return torch.cat(out, dim=1)


def input_gradients(group, x, y):
    """Gradient of the label's logit (pre-softmax) w.r.t. the input, per model: torch float32 [M, N, ...].

    What VoG (Agarwal et al., 2022) tracks across checkpoints. Exact batched backward for
    :class:`~cscore_lab.models.StackedMLP`; autograd through ``torch.func`` for other groups
    (each example's logit depends only on its own input, so one backward of their sum gives
    every example's gradient, as long as no layer mixes examples).
    """
    out = []
    if _group_kind(group) == "mlp":
        with torch.no_grad():
            for acts, logits, yc in _mlp_chunks(group, x, y):
                delta = torch.zeros_like(logits).scatter_(-1, _label_index(logits, yc), 1.0)
                for layer in reversed(range(1, len(group.weights))):  # back to the first layer's output
                    delta = torch.bmm(delta, group.weights[layer]) * (acts[layer] > 0)
                out.append(torch.bmm(delta, group.weights[0]))
        return torch.cat(out, dim=1)

    params = {k: v.detach() for k, v in group.params.items()}
    for xc, yc in zip(x.split(EVAL_CHUNK // 4), y.split(EVAL_CHUNK // 4)):
        xr = xc.unsqueeze(0).expand(group.num_models, *xc.shape).clone().requires_grad_(True)
        with torch.enable_grad():
            logits = _modules_logits(group, params, xr)
            picked = logits.gather(-1, _label_index(logits, yc)).sum()
            (gx,) = torch.autograd.grad(picked, xr)
        out.append(gx.detach())
    return torch.cat(out, dim=1)
