"""Distillation losses for supernet training (DynaBERT-style).

Logits: soft cross-entropy against the teacher's distribution (MSE for regression
tasks). Hidden states: MSE between student and teacher hidden states where the shapes
allow it (same hidden width; same tokens, i.e. no retention has dropped any yet),
with student hidden ``j`` matched to teacher hidden ``kept[j] + 1`` (embeddings to
embeddings), as DynaBERT's depth stage does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bertnas.arch import ArchConfig


def logit_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL divergence from the teacher's distribution; MSE when there is one output (regression).

    Same gradient as the soft cross-entropy, but zero when the student matches the teacher,
    so the logged loss shows how far each subnet still is from it.
    """
    student, teacher = student.float(), teacher.float()
    if student.shape[-1] == 1:
        return F.mse_loss(student, teacher)
    return F.kl_div(
        F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True, reduction="batchmean"
    )


def hidden_loss(
    arch: ArchConfig,
    student_states: Sequence[torch.Tensor],
    student_masks: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    teacher_channels: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Mean MSE over the student's hidden states that line up with the teacher's.

    ``teacher_states`` are the full model's (embeddings + every backbone layer). A student
    state is compared only while no token has been dropped (same sequence length) and
    only on its ``hidden_size`` first channels, which is what the slicing shares.
    ``teacher_channels`` (a rewired supernet's ``config.channel_order``) names the teacher
    channel each student channel holds; None: the same order. Returns None when no state
    lines up.
    """
    teacher_index = [0] + [layer.index + 1 for layer in arch.layers]
    losses = []
    for state, mask, index in zip(student_states, student_masks, teacher_index, strict=True):
        reference = teacher_states[index]
        if state.shape[1] != reference.shape[1]:
            break  # retention dropped tokens: later states no longer align position by position
        weight = mask.unsqueeze(-1).to(state.dtype)
        width = state.shape[-1]
        reference = reference[..., :width] if teacher_channels is None else reference[..., teacher_channels[:width]]
        difference = (state.float() - reference.float()) ** 2 * weight.float()
        losses.append(difference.sum() / (weight.sum() * state.shape[-1]).clamp(min=1.0))
    if not losses:
        return None
    return torch.stack(losses).mean()


def attention_loss(
    arch: ArchConfig,
    student_maps: Sequence[torch.Tensor],
    student_masks: Sequence[torch.Tensor],
    teacher_maps: Sequence[torch.Tensor],
) -> torch.Tensor | None:
    """Mean MSE between head-averaged attention maps of the student's layers and of the teacher
    layers they come from (``layer.index``), TinyBERT-style but on the mean over heads, so a
    subnet with fewer heads still compares. Only layers whose input still has every token take
    part (retention drops tokens after a layer's attention, so later layers stop lining up);
    padded queries and keys are left out. ``student_masks``: the mask of each layer's input
    (``hidden_masks[:-1]``). None when no layer lines up."""
    losses = []
    for layer, student, mask in zip(arch.layers, student_maps, student_masks, strict=False):
        reference = teacher_maps[layer.index]
        if student.shape[-1] != reference.shape[-1]:
            break
        valid = (mask[:, :, None] & mask[:, None, :]).to(student.dtype)
        difference = (student.float() - reference.float()) ** 2 * valid.float()
        losses.append(difference.sum() / valid.sum().clamp(min=1.0))
    if not losses:
        return None
    return torch.stack(losses).mean()
