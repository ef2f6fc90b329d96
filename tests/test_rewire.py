"""DynaBERT rewiring: function-preserving permutations that put the most important units first."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from bertnas.errors import BertnasError
from bertnas.supernet import ElasticBert
from bertnas.supernet.rewire import compute_importance, descending_order, rewire, rewire_supernet

TOL = 1e-5
HEADS, FFN = 4, 64


def _tiny_backbone(directory, num_labels: int = 2, seed: int = 0) -> str:
    """A random-initialised 2-layer BERT saved as a Hugging Face checkpoint directory."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    BertForSequenceClassification(config).save_pretrained(str(directory))
    # A tokenizer next to the weights, as load_backbone expects of a real checkpoint.
    vocab = directory / "vocab.txt"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab.write_text("\n".join(specials + [f"w{i}" for i in range(120 - len(specials))]) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(str(directory))
    return str(directory)


def _tiny(tmp_path, max_ffn_stack: int = 1, num_labels: int = 2) -> ElasticBert:
    return ElasticBert.from_backbone(_tiny_backbone(tmp_path, num_labels), max_ffn_stack=max_ffn_stack)


def _tiny_batches(count: int = 3, regression: bool = False) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        input_ids = torch.randint(5, 120, (6, 20), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[1, 12:] = 0  # padding must not matter
        attention_mask[4, 5:] = 0
        labels = torch.rand(6, generator=generator) if regression else torch.randint(0, 2, (6,), generator=generator)
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, 10:] = 1
        batches.append(
            dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels)
        )
    return batches


def _inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def _largest(supernet: ElasticBert):
    full = supernet.full_arch()
    stack = supernet.config.max_ffn_stack
    return full.replace(layers=tuple(replace(layer, ffn_stack=stack) for layer in full.layers))


def _outputs(supernet: ElasticBert, batch):
    supernet.set_active_subnet(_largest(supernet))
    with torch.no_grad():
        return supernet(**_inputs(batch))


def _assert_same_function(before, after, mask, channel_order=None) -> None:
    """Same logits; same hidden states, up to the recorded permutation of the residual stream."""
    mask = mask.bool()
    assert float((before.logits - after.logits).abs().max()) < TOL
    states = before.last_hidden_state if channel_order is None else before.last_hidden_state[..., channel_order]
    assert float((states - after.last_hidden_state)[mask].abs().max()) < TOL


def _subnet_loss(supernet: ElasticBert, batches, heads: int | None = None, ffn_dim: int | None = None) -> float:
    full = supernet.full_arch()
    layers = tuple(
        replace(layer, heads=heads or layer.heads, ffn_dim=ffn_dim or layer.ffn_dim) for layer in full.layers
    )
    supernet.set_active_subnet(full.replace(layers=layers))
    with torch.no_grad():
        total = sum(float(F.cross_entropy(supernet(**_inputs(b)).logits, b["labels"])) for b in batches)
    supernet.set_active_subnet(full)
    return total


def _with_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The conftest's real SST-2 sentences with their SST-2 labels."""
    return {**batch, "labels": torch.tensor([1, 0, 1, 1, 0, 0])}


# ---------------------------------------------------------------------------------- function preserved
@pytest.mark.parametrize("max_ffn_stack", [1, 2])
def test_rewiring_keeps_tiny_model_function(tmp_path, max_ffn_stack):
    supernet = _tiny(tmp_path, max_ffn_stack)
    batches = _tiny_batches()
    if max_ffn_stack == 2:
        # Pretend the extra FFNs were trained, so that they have importance and get permuted too.
        with torch.no_grad():
            for layer in supernet.layers:
                torch.nn.init.normal_(layer.extra_ffns[0].down.weight, std=0.05)
    before = [_outputs(supernet, b) for b in batches]
    result = rewire_supernet(supernet, batches)
    identity = torch.arange(HEADS)
    assert any(not torch.equal(order, identity) for order in result["head_order"])  # something moved
    if max_ffn_stack == 2:
        assert result["extra_ffn_order"].shape == (2, 1, FFN)
        assert not torch.equal(result["extra_ffn_order"][0, 0], torch.arange(FFN))
    for batch, reference in zip(batches, before, strict=True):
        _assert_same_function(
            reference, _outputs(supernet, batch), batch["attention_mask"], supernet.config.channel_order
        )


@pytest.mark.parametrize("max_ffn_stack", [1, 2])
def test_rewiring_keeps_minilm_function(batch, max_ffn_stack):
    torch.manual_seed(0)
    supernet = ElasticBert.from_backbone("minilm", num_labels=2, max_ffn_stack=max_ffn_stack)
    batch = _with_labels(batch)
    before = _outputs(supernet, batch)
    result = rewire_supernet(supernet, [batch])
    assert result["head_importance"].shape == (6, 12) and result["ffn_importance"].shape == (6, 1536)
    assert not torch.equal(result["head_order"][0], torch.arange(12))
    if max_ffn_stack == 2:
        # Untrained extra FFNs (zero output weights) have zero importance and stay as they are.
        assert float(result["extra_ffn_importance"].abs().max()) == 0.0
        assert torch.equal(result["extra_ffn_order"][:, 0], torch.arange(1536).repeat(6, 1))
    _assert_same_function(before, _outputs(supernet, batch), batch["attention_mask"], supernet.config.channel_order)


# ---------------------------------------------------------------------------------- sorted after rewiring
def _assert_sorted_and_prefix_maximal(original: torch.Tensor, order: torch.Tensor, recomputed: torch.Tensor) -> None:
    """Rewired scores are the original ones permuted, non-increasing, and every prefix keeps the top-k sum."""
    permuted = torch.gather(original, -1, order)
    assert bool((permuted[..., :-1] >= permuted[..., 1:]).all())
    scale = float(original.abs().max())
    # Recomputing on the rewired model gives the same scores in the new order (up to float noise).
    assert float((recomputed - permuted).abs().max()) <= 1e-4 * scale
    for k in range(1, original.shape[-1] + 1):
        top_k = torch.topk(original, k, dim=-1).values.sum(dim=-1)
        assert torch.allclose(recomputed[..., :k].sum(dim=-1), top_k, rtol=1e-4, atol=1e-6 * scale)


def test_importance_is_sorted_after_rewiring_tiny(tmp_path):
    supernet = _tiny(tmp_path)
    batches = _tiny_batches()
    result = rewire_supernet(supernet, batches)
    after = compute_importance(supernet, batches)
    _assert_sorted_and_prefix_maximal(result["head_importance"], result["head_order"], after.heads)
    _assert_sorted_and_prefix_maximal(result["ffn_importance"], result["ffn_order"], after.ffn)


def test_importance_is_sorted_after_rewiring_minilm(batch):
    torch.manual_seed(0)
    supernet = ElasticBert.from_backbone("minilm", num_labels=2)
    batch = _with_labels(batch)
    result = rewire_supernet(supernet, [batch])
    after = compute_importance(supernet, [batch])
    _assert_sorted_and_prefix_maximal(result["head_importance"], result["head_order"], after.heads)
    _assert_sorted_and_prefix_maximal(result["ffn_importance"], result["ffn_order"], after.ffn)


def test_half_width_subnet_keeps_the_live_units(tmp_path):
    """Dead heads / neurons (zero output weights) have zero importance and move behind the live ones.

    Before rewiring, the 50% subnets keep dead units and lose live ones; afterwards they
    keep exactly the live units and compute what the full model computes.
    """
    supernet = _tiny(tmp_path)
    batches = _tiny_batches()
    head_dim = supernet.config.head_dim
    with torch.no_grad():
        for layer in supernet.layers:
            out = layer.attention_out.weight.view(-1, HEADS, head_dim)
            out[:, [0, 2]] = 0  # heads 0 and 2 are dead: the first half holds one dead head
            layer.ffn.down.weight[:, : FFN // 2] = 0  # the whole first half of the FFN is dead
    full_loss = _subnet_loss(supernet, batches)
    heads_before = _subnet_loss(supernet, batches, heads=HEADS // 2)
    ffn_before = _subnet_loss(supernet, batches, ffn_dim=FFN // 2)
    result = rewire_supernet(supernet, batches)
    for order in result["head_order"].tolist():
        assert sorted(order[:2]) == [1, 3] and order[2:] == [0, 2]  # dead heads last, ties in their order
    assert not result["head_importance"].requires_grad
    assert bool((result["ffn_order"][:, : FFN // 2] >= FFN // 2).all())
    assert float(result["head_importance"][:, [0, 2]].abs().max()) == 0.0
    heads_after = _subnet_loss(supernet, batches, heads=HEADS // 2)
    ffn_after = _subnet_loss(supernet, batches, ffn_dim=FFN // 2)
    assert abs(heads_after - full_loss) < 1e-6 < abs(heads_before - full_loss)
    assert abs(ffn_after - full_loss) < 1e-6 < abs(ffn_before - full_loss)


def test_hidden_and_head_dimensions_are_ranked_and_sorted(batch, tmp_path):
    """MiniLM: hidden channels and within-head query/key and value dimensions are rewired too."""
    torch.manual_seed(0)
    supernet = ElasticBert.from_backbone("minilm", num_labels=2)
    batch = _with_labels(batch)
    before = _outputs(supernet, batch)
    result = rewire_supernet(supernet, [batch])
    hidden, head_dim = supernet.config.hidden_size, supernet.config.head_dim
    assert result["hidden_order"].shape == (hidden,) and result["qk_order"].shape == (6, 12, head_dim)
    for name in ("hidden_order", "qk_order", "v_order"):
        assert not torch.equal(result[name], torch.sort(result[name], dim=-1).values), name  # something moved
    assert supernet.config.channel_order == result["hidden_order"].tolist()
    _assert_same_function(before, _outputs(supernet, batch), batch["attention_mask"], supernet.config.channel_order)
    after = compute_importance(supernet, [batch])
    _assert_sorted_and_prefix_maximal(result["hidden_importance"], result["hidden_order"], after.hidden)
    # Within each head: non-increasing after rewiring (heads moved too, so compare each head's own scores).
    for scores in (after.qk, after.v):
        assert bool((scores[..., :-1] >= scores[..., 1:] - 1e-4 * float(scores.max())).all())
    # The channel order survives save/load, so distillation keeps matching the teacher after a resume.
    supernet.save_pretrained(tmp_path / "rewired")
    assert ElasticBert.from_pretrained(tmp_path / "rewired").config.channel_order == supernet.config.channel_order


def test_dead_value_dimensions_move_last(tmp_path):
    """Value dimensions whose rows are zero carry nothing: after rewiring, v_dim = head_dim - 2 loses nothing."""
    supernet = _tiny(tmp_path)
    batches = _tiny_batches()
    c = supernet.config
    with torch.no_grad():
        for layer in supernet.layers:
            rows = layer.value.weight.view(c.num_heads, c.head_dim, -1)
            rows[:, :2] = 0  # the first two dimensions of every head are dead
            layer.value.bias.view(c.num_heads, c.head_dim)[:, :2] = 0

    def loss_at(v_dim: int) -> float:
        full = supernet.full_arch()
        supernet.set_active_subnet(full.replace(layers=tuple(replace(x, v_dim=v_dim) for x in full.layers)))
        with torch.no_grad():
            return sum(float(F.cross_entropy(supernet(**_inputs(b)).logits, b["labels"])) for b in batches)

    full_loss, before = loss_at(c.head_dim), loss_at(c.head_dim - 2)
    result = rewire_supernet(supernet, batches)
    assert bool((result["v_order"][..., -2:] < 2).all())  # the dead dimensions went last in every head
    after = loss_at(c.head_dim - 2)
    assert abs(after - full_loss) < 1e-5 < abs(before - full_loss)


def test_hidden_rewiring_refuses_trained_bottlenecks(tmp_path):
    supernet = ElasticBert.from_backbone(_tiny_backbone(tmp_path), max_bottleneck=16)
    batches = _tiny_batches(1)
    with torch.no_grad():
        supernet.layers[1].bottleneck_in.weight.add_(0.01)
    with pytest.raises(BertnasError, match="layer 1's bottleneck projections"):
        rewire_supernet(supernet, batches)
    rewire_supernet(supernet, batches, dimensions=False)  # DynaBERT's rewiring alone leaves the channels in place
    assert supernet.config.channel_order is None


# ---------------------------------------------------------------------------------- importance semantics
def test_importance_sums_per_batch_scores_and_leaves_supernet_as_found(tmp_path):
    supernet = _tiny(tmp_path, max_ffn_stack=2)
    supernet.train()
    small = supernet.full_arch().replace(layers=supernet.full_arch().layers[:1])
    supernet.set_active_subnet(small)
    supernet.layers[0].ffn.up.weight.requires_grad_(False)  # a frozen parameter is still scored
    batches = _tiny_batches()
    together = compute_importance(supernet, batches)
    separate = [compute_importance(supernet, [b]) for b in batches]
    assert torch.allclose(together.heads, sum(s.heads for s in separate), rtol=1e-5)
    assert torch.allclose(together.ffn, sum(s.ffn for s in separate), rtol=1e-5)
    assert bool((together.heads > 0).all()) and bool((together.ffn > 0).any())
    # Deterministic (eval mode, no dropout), and nothing about the supernet changed.
    assert torch.equal(compute_importance(supernet, batches).heads, together.heads)
    assert supernet.training and supernet.get_active_arch() == supernet.complete(small)
    assert not supernet.layers[0].ffn.up.weight.requires_grad
    assert all(p.grad is None for p in supernet.parameters())
    # DynaBERT's reference code reads never-zeroed (running) gradients: same on one batch, not on several.
    running = compute_importance(supernet, batches, running_gradients=True)
    assert torch.allclose(compute_importance(supernet, batches[:1], running_gradients=True).heads, separate[0].heads)
    assert not torch.allclose(running.heads, together.heads)


def test_regression_head_uses_mse(tmp_path):
    supernet = _tiny(tmp_path, num_labels=1)
    importance = compute_importance(supernet, _tiny_batches(regression=True))
    assert bool(torch.isfinite(importance.heads).all()) and float(importance.heads.sum()) > 0


def test_custom_loss(tmp_path):
    supernet = _tiny(tmp_path)
    batches = _tiny_batches(1)
    default = compute_importance(supernet, batches).heads
    doubled = compute_importance(supernet, batches, lambda out, b: 2 * F.cross_entropy(out.logits, b["labels"])).heads
    assert torch.allclose(doubled, 2 * default)


def test_descending_order_is_stable():
    assert descending_order(torch.tensor([1.0, 3.0, 1.0, 3.0, 0.0])).tolist() == [1, 3, 0, 2, 4]
    assert descending_order(torch.zeros(5)).tolist() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------- errors
def test_no_classifier_is_an_error():
    supernet = ElasticBert.from_backbone("minilm")
    assert supernet.classifier is None
    with pytest.raises(BertnasError, match="task head"):
        compute_importance(supernet, [{"input_ids": torch.ones(1, 4, dtype=torch.long)}])


def test_bad_inputs_are_errors(tmp_path):
    supernet = _tiny(tmp_path)
    with pytest.raises(BertnasError, match="no batches"):
        compute_importance(supernet, [])
    with pytest.raises(BertnasError, match="labels"):
        compute_importance(supernet, [_inputs(_tiny_batches(1)[0])])
    with pytest.raises(BertnasError, match="head_importance has shape"):
        rewire(supernet, torch.zeros(3, HEADS), torch.zeros(2, FFN))


def test_distillation_matches_teacher_channels_after_hidden_rewiring(tmp_path):
    """The full subnet of a rewired supernet has zero hidden loss against the (unpermuted) teacher."""
    from bertnas.training.distill import hidden_loss

    supernet = _tiny(tmp_path)
    batches = _tiny_batches()
    teacher = supernet.get_active_subnet().eval()
    rewire_supernet(supernet, batches)
    supernet.eval()
    channels = torch.tensor(supernet.config.channel_order)
    inputs = _inputs(batches[0])
    with torch.no_grad():
        reference = teacher(**inputs, output_hidden_states=True)
        supernet.set_active_subnet(supernet.full_arch())
        output = supernet(**inputs, output_hidden_states=True)
    arch = supernet.get_active_arch()
    aligned = hidden_loss(arch, output.hidden_states, output.hidden_masks, reference.hidden_states, channels)
    unaligned = hidden_loss(arch, output.hidden_states, output.hidden_masks, reference.hidden_states)
    assert float(aligned) < 1e-10 < 0.1 < float(unaligned)


def test_fitted_bottlenecks_start_closer_to_the_backbone_layer_than_the_identity():
    """The ``fit`` bottleneck start: on held-out inputs, a bottleneck layer's output is closer to
    the backbone layer's output than under the identity start, at every width of the space, and
    the projection stays shared (width 8 uses the first 8 columns of the width-16 fit)."""
    from toys import tiny_bert

    from bertnas.arch import LayerConfig
    from bertnas.model.functional import layer_forward
    from bertnas.supernet.bottleneck_init import fit_bottlenecks

    supernet = ElasticBert.from_hf_model(tiny_bert(100), "tiny", max_bottleneck=16).eval()
    generator = torch.Generator().manual_seed(0)

    def batch():
        ids = torch.randint(5, 100, (16, 12), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    fit_on, held_out = [batch() for _ in range(8)], batch()
    c = supernet.config

    def layer_gap(b):
        """MSE between layer 0 of width b and the backbone's layer 0, on the held-out batch."""
        supernet.set_active_subnet(supernet.full_arch())
        with torch.no_grad():
            states = supernet(**held_out, output_hidden_states=True).hidden_states
            shape = LayerConfig(0, c.num_heads, c.head_dim, c.head_dim, c.ffn_dim, bottleneck=b)
            mask = held_out["attention_mask"].bool()
            out, _ = layer_forward(
                states[0],
                mask,
                mask.sum(1),
                supernet._layer_weights(shape, c.hidden_size),
                shape,
                supernet.run_options(),
            )
        return float(F.mse_loss(out, states[1]))

    before = {b: layer_gap(b) for b in (8, 16)}
    report = fit_bottlenecks(supernet, fit_on, [8, 16])
    after = {b: layer_gap(b) for b in (8, 16)}
    assert set(report) == {0, 1} and all(0 < r < 1 for layer in report.values() for r in layer.values())
    assert all(after[b] < 0.7 * before[b] for b in (8, 16)), (before, after)
    assert supernet.get_active_arch() == supernet.full_arch() and not supernet.training
