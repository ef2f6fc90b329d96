"""The elastic supernet: the full subnet is the backbone; retention is PoWER-BERT's, padding-safe."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from bertnas.arch import ArchConfig, LayerConfig
from bertnas.errors import BertnasError
from bertnas.model.retention import select_tokens, token_significance
from bertnas.supernet import ElasticBert

TOL = 1e-5


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_full_minilm_equals_huggingface(minilm_hf, minilm_supernet, batch):
    hf_model, _ = minilm_hf
    supernet = minilm_supernet
    supernet.set_active_subnet(supernet.full_arch())
    with torch.no_grad():
        ref = hf_model(**batch, output_hidden_states=True)
        ours = supernet(**batch, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    assert _max_diff(ref.logits, ours.logits) < TOL
    for theirs, mine in zip(ref.hidden_states, ours.hidden_states, strict=True):
        assert _max_diff(theirs[mask], mine[mask]) < TOL


def test_full_minilm_bertmodel_without_head_equals_huggingface(batch):
    from bertnas.supernet import load_backbone

    hf_model, tokenizer = load_backbone("minilm")
    assert isinstance(hf_model, BertModel)
    supernet = ElasticBert.from_backbone("minilm")
    assert supernet.classifier is None and supernet.pooler is not None
    with torch.no_grad():
        ref = hf_model(**batch)
        ours = supernet(**batch)
    mask = batch["attention_mask"].bool()
    assert _max_diff(ref.last_hidden_state[mask], ours.last_hidden_state[mask]) < TOL
    assert _max_diff(ref.pooler_output, ours.pooler_output) < TOL


def test_full_random_bert_base_equals_huggingface():
    torch.manual_seed(1)
    hf_model = BertForSequenceClassification(BertConfig(num_labels=3)).eval()  # bert-base shapes
    supernet = ElasticBert.from_hf_model(hf_model, "bert-base-shaped", max_ffn_stack=2, max_bottleneck=192)
    assert supernet.config.num_layers == 12 and supernet.config.hidden_size == 768
    input_ids = torch.randint(1000, 30000, (3, 40))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 25:] = 0
    attention_mask[2, 9:] = 0
    with torch.no_grad():
        ref = hf_model(input_ids=input_ids, attention_mask=attention_mask)
        ours = supernet(input_ids=input_ids, attention_mask=attention_mask)
    assert _max_diff(ref.logits, ours.logits) < TOL


def test_zero_initialised_extra_ffns_keep_the_backbone_function(minilm_supernet, batch):
    supernet = minilm_supernet
    full = supernet.full_arch()
    stacked = full.replace(layers=tuple(LayerConfig(**{**vars(layer), "ffn_stack": 4}) for layer in full.layers))
    with torch.no_grad():
        supernet.set_active_subnet(full)
        reference = supernet(**batch).logits
        supernet.set_active_subnet(stacked)
        assert _max_diff(supernet(**batch).logits, reference) < TOL


def _arch(supernet: ElasticBert, **layer_changes) -> ArchConfig:
    full = supernet.full_arch()
    layers = []
    for layer in full.layers:
        changes = {key: value(layer.index) if callable(value) else value for key, value in layer_changes.items()}
        layers.append(LayerConfig(**{**vars(layer), **changes}))
    return full.replace(layers=tuple(layers))


def test_slicing_really_shrinks_the_weights(minilm_supernet):
    supernet = minilm_supernet
    supernet.set_active_subnet(_arch(supernet, heads=6, qk_dim=16, v_dim=8, ffn_dim=300).replace(hidden_size=200))
    state = supernet.active_state_dict()
    assert state["layers.0.query.weight"].shape == (6 * 16, 200)
    assert state["layers.0.value.weight"].shape == (6 * 8, 200)
    assert state["layers.0.attention_out.weight"].shape == (200, 48)
    assert state["layers.0.ffn.up.weight"].shape == (300, 200)
    assert state["embeddings.word"].shape == (30522, 200)
    supernet.set_active_subnet(supernet.full_arch())


def test_retention_on_a_padded_batch_equals_each_example_alone(minilm_supernet, batch):
    """Each example keeps its own tokens: batching with padding changes nothing."""
    supernet = minilm_supernet
    supernet.set_active_subnet(_arch(supernet, retention=lambda i: [1.0, 0.8, 0.6, 0.5, 0.4, 0.3][i]))
    with torch.no_grad():
        batched = supernet(**batch)
        lengths = batch["attention_mask"].sum(dim=1)
        for row, length in enumerate(lengths.tolist()):
            alone = supernet(**{key: value[row : row + 1, :length] for key, value in batch.items()})
            assert _max_diff(alone.logits[0], batched.logits[row]) < TOL
            kept = int(batched.attention_mask[row].sum())
            assert kept == alone.last_hidden_state.shape[1] == max(1, -(-int(length * 0.3 * 1e6) // int(1e6)))
    supernet.set_active_subnet(supernet.full_arch())


def test_retention_shrinks_the_sequence(minilm_supernet, batch):
    supernet = minilm_supernet
    supernet.set_active_subnet(_arch(supernet, retention=lambda i: 1.0 if i < 2 else 0.5))
    with torch.no_grad():
        out = supernet(**batch, output_hidden_states=True)
    longest = int(batch["attention_mask"].sum(dim=1).max())
    assert out.hidden_states[2].shape[1] == batch["input_ids"].shape[1]
    assert out.hidden_states[3].shape[1] == -(-longest // 2)
    supernet.set_active_subnet(supernet.full_arch())


def test_token_selection_keeps_cls_and_order_and_never_prefers_padding():
    probs = torch.softmax(torch.randn(2, 3, 6, 6), dim=-1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    significance = token_significance(probs, mask)
    assert torch.isinf(significance[1, 3:]).all() and (significance[1, 3:] < 0).all()
    index, new_mask = select_tokens(significance, mask, torch.tensor([3, 2]))
    assert index.shape == (2, 3)
    assert (index[:, 0] == 0).all()  # [CLS] first, always
    assert (index.diff(dim=1) > 0).all()  # original order kept
    assert new_mask[0].all() and int(new_mask[1].sum()) == 2
    assert index[1][new_mask[1]].max() < 3  # example 1 keeps real tokens only
    best_other = 1 + int(significance[1, 1:3].argmax())
    assert set(index[1][new_mask[1]].tolist()) == {0, best_other}


def test_significance_is_attention_received_minus_self():
    probs = torch.tensor([[[[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    significance = token_significance(probs, mask)
    assert torch.allclose(significance[0, 1:], torch.tensor([0.5 + 0.8, 0.6]))


def test_subnet_outside_the_supernet_is_refused(minilm_supernet):
    supernet = minilm_supernet
    with pytest.raises(BertnasError, match=r"layers\[3\]\.heads=13 exceeds the backbone"):
        supernet.set_active_subnet(_arch(supernet, heads=lambda i: 13 if i == 3 else 12))
    with pytest.raises(BertnasError, match=r"layers\[0\]\.ffn_stack=5"):
        supernet.set_active_subnet(_arch(supernet, ffn_stack=5))


def test_supernet_save_and_load_roundtrip(minilm_supernet, batch, tmp_path):
    supernet = minilm_supernet
    arch = _arch(supernet, heads=6, ffn_stack=2, bottleneck=128, retention=0.7)
    supernet.set_active_subnet(arch)
    supernet.save_pretrained(tmp_path / "supernet")
    loaded = ElasticBert.from_pretrained(tmp_path / "supernet")
    loaded.set_active_subnet(arch)
    with torch.no_grad():
        assert _max_diff(loaded(**batch).logits, supernet(**batch).logits) == 0.0
    assert loaded.tokenizer is not None
    supernet.set_active_subnet(supernet.full_arch())
