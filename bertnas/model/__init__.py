"""BERT math shared by the supernet and compact models, and the compact model itself."""

from bertnas.model.compact import CompactBert, CompactConfig
from bertnas.model.functional import ForwardOutput
from bertnas.model.hf import CompactBertConfig, CompactBertForSequenceClassification, CompactBertOutput

__all__ = [
    "ForwardOutput",
    "CompactBert",
    "CompactBertConfig",
    "CompactBertForSequenceClassification",
    "CompactBertOutput",
    "CompactConfig",
]
