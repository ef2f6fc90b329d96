"""Task data (GLUE and the user's own): task registry, loading, cached tokenization, batching and metrics."""

from bertnas.data.batching import (
    Collator,
    LengthBucketSampler,
    batch_indices,
    collate,
    make_dataloader,
    padding_comparison,
    padding_share,
)
from bertnas.data.custom import TaskSpec, compose_task
from bertnas.data.glue import (
    DATA_FORMAT_VERSION,
    HUB_DATASET,
    TASKS,
    Example,
    GlueSplit,
    TaskInfo,
    TokenizedSplit,
    default_cache_dir,
    read_glue_tsv,
    tokenize_split,
)
from bertnas.data.metrics import HIGHER_IS_BETTER, compute_metrics, higher_is_better, main_metric
from bertnas.data.tasks import get_task, is_glue, load_task, resolve_split

__all__ = [
    "DATA_FORMAT_VERSION",
    "HIGHER_IS_BETTER",
    "HUB_DATASET",
    "TASKS",
    "Collator",
    "Example",
    "GlueSplit",
    "LengthBucketSampler",
    "TaskInfo",
    "TaskSpec",
    "TokenizedSplit",
    "batch_indices",
    "collate",
    "compose_task",
    "compute_metrics",
    "default_cache_dir",
    "get_task",
    "higher_is_better",
    "is_glue",
    "load_task",
    "main_metric",
    "make_dataloader",
    "padding_comparison",
    "padding_share",
    "read_glue_tsv",
    "resolve_split",
    "tokenize_split",
]
