"""The weight-sharing supernet: an elastic view over one pretrained BERT."""

from bertnas.supernet.backbone import DEFAULT_BACKBONE, load_backbone, resolve_backbone
from bertnas.supernet.elastic import ElasticBert, SupernetConfig

__all__ = ["DEFAULT_BACKBONE", "ElasticBert", "SupernetConfig", "load_backbone", "resolve_backbone"]
