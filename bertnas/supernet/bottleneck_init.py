"""A least-squares start for the bottleneck projections (the ``fit`` bottleneck initialisation).

A bottleneck layer computes ``Norm_b(x + W_out u + b_out)`` where ``u`` is the layer's
attention and FFN run at width ``b`` on ``W_in x`` (see :mod:`bertnas.model.functional`).
The identity start (``W_in``, ``W_out`` the identity on the first ``b`` channels, ``Norm_b``
a plain LayerNorm) makes the output ``Norm(x + [u; 0])``: the residual counted twice on the
first ``b`` channels, the other ``h - b`` channels never updated, and the backbone layer's
own LayerNorm scale and shift lost. The subnet starts far from the backbone and the
supernet must learn the projection from few examples.

The ``fit`` start keeps ``W_in`` (the layer then runs the backbone's own weights on the
``b`` most important residual channels, which is what the sliced weights expect), copies
the backbone layer's output norm into ``Norm_b``, and fits ``W_out`` and ``b_out`` by ridge
regression on a few batches so that the bottleneck layer's output matches the full
backbone layer's: with ``y = Norm_{g, beta}(z)`` the backbone layer's output, the target of
``x + W_out u + b_out`` is ``(y - beta) / g``, which has the same normalised value. The
projection is shared by every bottleneck width (a width ``b`` uses its first ``b``
columns), so the columns are fitted in stages, narrowest width first: width ``b_k``'s new
columns are fitted to what the columns before them leave unexplained at that width
(each prefix is the least-squares fit given the narrower ones). Like the rest of the
supernet's extra parameters it is a start, trained afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from bertnas.arch import LayerConfig
from bertnas.model.functional import layer_forward

# Ridge strength relative to the mean diagonal of the Gram matrix: enough to keep a
# near-collinear channel from getting a huge weight, small against the signal.
RIDGE = 1e-3
# |gamma| below this is treated as this (a nearly dead channel cannot be inverted).
MIN_GAMMA = 1e-2


@torch.no_grad()
def fit_bottlenecks(
    supernet: Any,
    batches: Iterable[Mapping[str, torch.Tensor]],
    widths: Sequence[int],
    ridge: float = RIDGE,
) -> dict[int, dict[int, float]]:
    """Fit every bottleneck layer's output projection and norm (see the module doc) in place.

    ``widths``: the bottleneck widths the space uses (at most the supernet's
    ``max_bottleneck``). Returns, per layer and width, the relative residual
    ``|target - fit| / |target|`` on the batches (1.0 would be no better than zero).
    """
    c = supernet.config
    widths = sorted({int(b) for b in widths if 0 < int(b) <= c.max_bottleneck})
    if not widths or not any(layer.has_bottleneck for layer in supernet.layers):
        return {}
    was_training = supernet.training
    supernet.eval()
    previous = supernet.get_active_arch()
    full = supernet.full_arch()
    supernet.set_active_subnet(full)
    states: list[list[torch.Tensor]] = []  # per batch: embeddings + every layer's output
    masks: list[torch.Tensor] = []
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        output = supernet(**inputs, output_hidden_states=True)
        states.append([s.float() for s in output.hidden_states])
        masks.append(output.hidden_masks[0])
    options = supernet.run_options()
    h = c.hidden_size
    report: dict[int, dict[int, float]] = {}
    for i, params in enumerate(supernet.layers):
        if not params.has_bottleneck:
            continue
        gamma, beta = params.ffn_norm.weight.float(), params.ffn_norm.bias.float()
        safe = torch.where(gamma.abs() < MIN_GAMMA, torch.full_like(gamma, MIN_GAMMA) * gamma.sign(), gamma)
        safe = torch.where(safe == 0, torch.full_like(safe, MIN_GAMMA), safe)
        x = torch.cat([s[i][m] for s, m in zip(states, masks, strict=True)])  # (tokens, h)
        y = torch.cat([s[i + 1][m] for s, m in zip(states, masks, strict=True)])
        target = (y - beta) / safe - x  # (tokens, h): what the projection must add to x
        weight = torch.zeros(h, c.max_bottleneck, dtype=torch.float32)
        bias = torch.zeros(h, dtype=torch.float32)
        done = 0
        report[i] = {}
        for b in widths:
            shape = LayerConfig(i, c.num_heads, c.head_dim, c.head_dim, c.ffn_dim, bottleneck=b)
            weights = supernet._layer_weights(shape, h)
            weights.bottleneck_out = None  # the layer then returns its b-wide inner output u
            inner = []
            for s, m in zip(states, masks, strict=True):
                u, _ = layer_forward(s[i].to(params.ffn_norm.weight.dtype), m, m.sum(dim=1), weights, shape, options)
                inner.append(u.float()[m])
            u = torch.cat(inner)  # (tokens, b)
            residual = target - u[:, :done] @ weight[:, :done].T - bias
            design = u[:, done:b]
            if done == 0:  # the first stage fits the bias too
                design = torch.cat([design, torch.ones(len(design), 1)], dim=1)
            gram = design.T @ design
            gram += ridge * gram.diagonal().mean() * torch.eye(len(gram))
            solution = torch.linalg.solve(gram, design.T @ residual)  # (columns, h)
            if done == 0:
                bias = solution[-1]
                solution = solution[:-1]
            weight[:, done:b] = solution.T
            fitted = u @ weight[:, :b].T + bias
            report[i][b] = float((target - fitted).norm() / target.norm().clamp(min=1e-12))
            done = b
        dtype = params.bottleneck_out.weight.dtype
        params.bottleneck_out.weight.copy_(weight.to(dtype))
        params.bottleneck_out.bias.copy_(bias.to(dtype))
        params.bottleneck_norm.weight.copy_(params.ffn_norm.weight)
        params.bottleneck_norm.bias.copy_(params.ffn_norm.bias)
    supernet.set_active_subnet(previous)
    supernet.train(was_training)
    return report
