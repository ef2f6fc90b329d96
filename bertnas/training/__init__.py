"""Training: the teacher, the supernet, and the chosen subnets.

Modules: :mod:`.finetune` (the teacher: ``bertnas finetune``), :mod:`.supernet_train` (the
weight-sharing supernet: rewiring, then the recipe's steps; ``bertnas supernet train``),
:mod:`.strategies` (recipes and per-step subnet samplers: sandwich, families, progressive),
:mod:`.distill` (the distillation losses), :mod:`.augment` (input perturbation),
:mod:`.subnet_finetune` (a chosen subnet trained as itself: ``bertnas finetune-subnets``),
:mod:`.evaluate` (a model's metrics on a split; the held-out search split),
:mod:`.eval_cache` (the weight-shared evaluations' SQLite cache), :mod:`.common` (seeds,
optimizer, schedule, the shared update step and batch order, run records),
:mod:`.distributed` (``torchrun``), :mod:`.presets`, :mod:`.probe` (timed probes for the
pipeline's plan), :mod:`.locate` (what earlier runs cached).

Nothing is imported here: each command imports the trainer it runs.
"""
