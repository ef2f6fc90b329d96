"""The weight-sharing supernet: an elastic view over one pretrained BERT."""

from bertnas.backbones import DEFAULT_BACKBONE, resolve_backbone
from bertnas.supernet.backbone import load_backbone
from bertnas.supernet.elastic import ElasticBert, SupernetConfig

__all__ = ["DEFAULT_BACKBONE", "ElasticBert", "SupernetConfig", "load_backbone", "resolve_backbone"]
