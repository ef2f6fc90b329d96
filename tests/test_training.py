"""Teacher fine-tuning, supernet training (loss goes down, resume), cached weight-shared evaluation.

Runs on a tiny random BERT (real tokenizer, real training code) and a small SST-2-format
data set written here, so it takes seconds.
"""

from __future__ import annotations

import json
import random

import pytest
from toys import tiny_bert

from bertnas.errors import BertnasError
from bertnas.search.accuracy import SubnetEvaluator
from bertnas.training.finetune import FinetuneConfig, finetune
from bertnas.training.supernet_train import CHECKPOINT_DIR, STATE_NAME, SupernetTrainer, config_from

GOOD = ["wonderful", "brilliant", "moving", "delightful", "superb", "charming", "gripping", "funny"]
BAD = ["dull", "awful", "tedious", "boring", "clumsy", "lifeless", "painful", "silly"]
SEARCH_SPLIT = "32"  # train examples held out for the search (the default would hold out a quarter of 256)
FILLER = ["the film is", "a", "this movie feels", "an often", "the acting is", "its story is", "it 's"]


def _write_sst2(directory, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for _ in range(rows):
        label = rng.randint(0, 1)
        word = rng.choice(GOOD if label else BAD)
        lines.append(f"{rng.choice(FILLER)} {word} and {rng.choice(FILLER)} {rng.choice(FILLER)} . \t{label}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ("train.tsv" if seed == 0 else "dev.tsv")).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    _write_sst2(root / "SST-2", 256, seed=0)
    _write_sst2(root / "SST-2", 64, seed=1)
    return root


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory, minilm_hf):
    """A 2-layer random BERT with the real MiniLM tokenizer, saved like any checkpoint."""
    _, tokenizer = minilm_hf
    path = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert(tokenizer.vocab_size).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_backbone, glue_dir, monkeypatch_module):
    out = tmp_path_factory.mktemp("teacher") / "sst2"
    config = FinetuneConfig(
        task="sst2",
        backbone=str(tiny_backbone),
        epochs=6,
        batch_size=16,
        lr=2e-3,
        glue_dir=str(glue_dir),
        search_split=SEARCH_SPLIT,
    )
    result = finetune(config, out)
    assert (out / "metrics.json").is_file() and (out / "run.json").is_file()
    assert result["score"] > 0.6  # the toy task is learnable: a real signal went through
    return out


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTNAS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield patch


def _train_config(teacher, glue_dir, **overrides):
    values = dict(
        epochs=1.0,
        checkpoint_every=4,
        train_subset=None,
        lr=1e-3,
        glue_dir=str(glue_dir),
        space="unified",
        random_subnets=1,
        rewire_batches=2,
        search_split=SEARCH_SPLIT,
    )
    values.update(overrides)
    return config_from("sst2", str(teacher), "quick", **values)


def test_finetune_refuses_to_overwrite(teacher, glue_dir):
    with pytest.raises(BertnasError, match="already exists"):
        finetune(FinetuneConfig(task="sst2", backbone=str(teacher), glue_dir=str(glue_dir)), teacher)


def test_supernet_training_lowers_the_loss(teacher, glue_dir, tmp_path):
    # the whole toy train split (no search split): 48 steps, enough for the loss to halve
    config = _train_config(teacher, glue_dir, epochs=6.0, lr=1e-2, search_split="none")
    trainer = SupernetTrainer(config, tmp_path / "supernet")
    losses = []
    original = trainer._step

    def recording_step(*args, **kwargs):
        result = original(*args, **kwargs)
        losses.append(result["smallest"])
        return result

    trainer._step = recording_step
    result = trainer.train()
    assert len(losses) == 48  # (256 - 32 held out for the search) / batch 32 * 6 epochs
    # The smallest subnet starts far from the teacher and must move towards it.
    assert sum(losses[-6:]) / 6 < 0.5 * sum(losses[:6]) / 6
    assert result["subnets"]["smallest"]["accuracy"] > 0.8
    assert {"full", "largest", "smallest"} <= set(result["subnets"])
    for name in ("config.json", "model.safetensors", "metrics.json", "run.json", "training.json"):
        assert (tmp_path / "supernet" / name).is_file()
    run = json.loads((tmp_path / "supernet" / "run.json").read_text())
    assert run["config"]["seed"] == 42 and "torch" in run["versions"]


def test_training_resumes_from_the_last_checkpoint(teacher, glue_dir, tmp_path):
    out = tmp_path / "supernet"
    trainer = SupernetTrainer(_train_config(teacher, glue_dir), out)

    class Interrupted(Exception):
        pass

    steps_seen = []
    original = trainer._step

    def dying_step(supernet, teacher_model, space, batch, step, *rest):
        steps_seen.append(step)
        if step == 6:  # after the checkpoint at step 4
            raise Interrupted
        return original(supernet, teacher_model, space, batch, step, *rest)

    trainer._step = dying_step
    with pytest.raises(Interrupted):
        trainer.train()
    state = json.loads((out / CHECKPOINT_DIR / STATE_NAME).read_text())
    assert state["step"] == 4
    assert not (out / "training.json").exists()
    # A checkpoint left by one configuration is not resumed with another.
    with pytest.raises(BertnasError, match="different run"):
        SupernetTrainer(_train_config(teacher, glue_dir, seed=7), out).train()

    resumed = SupernetTrainer(_train_config(teacher, glue_dir), out)
    resumed_steps = []
    original_resumed = resumed._step

    def recording_step(supernet, teacher_model, space, batch, step, *rest):
        resumed_steps.append(step)
        return original_resumed(supernet, teacher_model, space, batch, step, *rest)

    resumed._step = recording_step
    resumed.train()
    assert resumed_steps == list(range(4, 7))  # continues at the saved step, to the end (224 / 32 = 7 steps)
    assert not (out / CHECKPOINT_DIR).exists()  # the finished supernet replaced its checkpoint


def _attention_gap(supernet_dir, teacher, glue_dir):
    """Mean attention-map MSE against the teacher of the space's smallest and 8 random subnets (toy dev split)."""
    import torch

    from bertnas.data import Collator, get_task
    from bertnas.space import load_space
    from bertnas.supernet.elastic import ElasticBert
    from bertnas.training.distill import attention_loss
    from bertnas.training.evaluate import load_train_dev

    supernet = ElasticBert.from_pretrained(supernet_dir).eval()
    reference = ElasticBert.from_backbone(str(teacher), task="sst2").get_active_subnet().eval()
    space = load_space("unified").bind(supernet.limits, backbone=str(teacher))
    dev = load_train_dev(get_task("sst2"), supernet.tokenizer, str(glue_dir), None, None, None, "none").dev
    batch = Collator(supernet.config.pad_token_id)([dev[i] for i in range(len(dev))])
    batch.pop("labels")
    with torch.no_grad():
        target = reference(**batch, output_hidden_states=True, output_attentions=True)
        gaps = []
        for arch in [space.smallest(), *space.sample_many(8, seed=0)]:
            supernet.set_active_subnet(arch)
            student = supernet(**batch, output_hidden_states=True, output_attentions=True)
            gap = attention_loss(arch, student.attentions, student.hidden_masks[:-1], target.attentions)
            if gap is not None:
                gaps.append(float(gap))
    return sum(gaps) / len(gaps)


def test_attention_transfer_brings_the_subnets_maps_towards_the_teachers(teacher, glue_dir, tmp_path):
    """The ``budget-attention`` recipe's extra loss does its job: after the same training, the attention
    maps of the smallest and of random subnets are closer to the teacher's than without the transfer."""
    gaps = {}
    for weight in (0.0, 50.0):
        out = tmp_path / f"attention-{weight:g}"
        config = _train_config(
            teacher,
            glue_dir,
            epochs=3.0,
            lr=1e-2,
            recipe="budget-attention",
            attention_weight=weight,
            search_split="none",
        )
        assert config.resolved_recipe().attention_weight == weight
        result = SupernetTrainer(config, out).train()
        assert result["recipe"]["attention_weight"] == weight  # recorded with the supernet
        gaps[weight] = _attention_gap(out, teacher, glue_dir)
    assert gaps[50.0] < 0.5 * gaps[0.0], gaps  # measured: 0.0021 against 0.0109


def test_perturbation_keeps_special_tokens_and_padding_and_is_reproducible():
    import torch

    from bertnas.training.augment import perturb_batch

    cls, sep, pad, mask = 101, 102, 0, 103
    ids = torch.tensor([[cls] + list(range(1000, 1030)) + [sep] + [pad] * 4] * 64)  # (64, 36)
    attention = (ids != pad).long()
    special = [cls, sep, pad, mask]

    def run(seed, rate=0.3):
        return perturb_batch(ids, attention, rate, torch.Generator().manual_seed(seed), mask, special)

    perturbed, rows = run(0)
    assert perturbed.shape == ids.shape and rows.dtype == torch.bool
    assert torch.equal(perturbed[:, 0], ids[:, 0]) and torch.equal(perturbed[:, 31:], ids[:, 31:])
    assert torch.equal(perturbed[~rows], ids[~rows])  # clean rows untouched: the task loss keeps them
    changed = (perturbed != ids)[rows][:, 1:31].float().mean()
    assert 0.2 < float(changed) < 0.4  # about the rate, in the perturbed rows
    assert 16 < int(rows.sum()) < 48  # about half of the rows
    new = perturbed[perturbed != ids]
    assert bool(((new == mask) | ((new >= 1000) & (new < 1030))).all())  # [MASK] or a word piece of the batch
    assert torch.equal(run(0)[0], perturbed) and not torch.equal(run(1)[0], perturbed)
    untouched, none = run(0, rate=0.0)
    assert torch.equal(untouched, ids) and not bool(none.any())


def test_augmented_training_is_recorded_reproducible_and_changes_the_weights(teacher, glue_dir, tmp_path):
    from safetensors.torch import load_file

    def weights(name, **overrides):
        config = _train_config(teacher, glue_dir, recipe="budget-attention", search_split="none", **overrides)
        result = SupernetTrainer(config, tmp_path / name).train()
        return result, load_file(tmp_path / name / "model.safetensors")

    result, augmented = weights("augmented", augment=0.5)
    assert result["recipe"]["augment"] == 0.5
    _, again = weights("again", augment=0.5)
    _, plain = weights("plain", augment=0.0)
    assert all(bool((augmented[k] == again[k]).all()) for k in augmented)  # same perturbations: a resume draws them too
    assert any(not bool((augmented[k] == plain[k]).all()) for k in augmented)


def test_evaluation_is_cached(teacher, glue_dir, tmp_path):
    out = tmp_path / "supernet"
    SupernetTrainer(_train_config(teacher, glue_dir, checkpoint_every=100), out).train()
    evaluator = SubnetEvaluator.open(out, glue_dir=str(glue_dir))
    arch = evaluator.supernet.full_arch()
    first = evaluator.evaluate(arch)
    assert first.cached is False and 0.0 <= first.metric <= 1.0

    calls = []
    import bertnas.search.accuracy as evaluate_module  # where SubnetEvaluator looks it up

    original = evaluate_module.evaluate_predictions

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    evaluate_module.evaluate_predictions = counting
    try:
        reopened = SubnetEvaluator.open(out, glue_dir=str(glue_dir))  # a new process would do the same
        second = reopened.evaluate(arch)
        assert second.cached is True and second.metrics == first.metrics
        assert calls == []
        smaller = arch.replace(layers=arch.layers[:1])
        assert reopened.evaluate(smaller).cached is False
        assert calls == [1]
    finally:
        evaluate_module.evaluate_predictions = original


SEARCH = ["search", "--task", "sst2", "--device", "pixel4", "--budget", "60ms"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["finetune", "--task", "sst2", "--train-subset", "0"], "--train-subset 0 must be at least 1"),
        (["finetune", "--task", "sst2", "--epochs", "0"], "--epochs 0.0 must be more than 0"),
        (["finetune", "--task", "sst2", "--epochs", "-1"], "--epochs -1.0 must be more than 0"),
        (["finetune", "--task", "sst2", "--lr", "-1"], "--lr -1.0 must be more than 0"),
        (["finetune", "--task", "sst2", "--seed", "-1"], "--seed -1 must be at least 0"),
        (["finetune", "--task", "sst2", "--search-split", "0.9"], "--search-split '0.9'"),
        (["supernet", "train", "--task", "sst2", "--teacher", "T", "--checkpoint-every", "0"], "--checkpoint-every 0"),
        (["supernet", "train", "--task", "sst2", "--teacher", "T", "--max-steps", "0"], "--max-steps 0 must be"),
        ([*SEARCH, "--dev-subset", "-5"], "--dev-subset -5"),
        ([*SEARCH, "--dev-subset", "0"], "--dev-subset 0"),
        ([*SEARCH, "--seed", "-1"], "--seed -1"),
        ([*SEARCH, "--split", "test"], "--split 'test'"),
    ],
)
def test_numbers_out_of_range_are_refused_before_any_work(args, message, tmp_path, capsys, monkeypatch):
    import time

    from bertnas.cli.main import main

    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "T").mkdir()  # a teacher directory, never read: the numbers are checked first
    start = time.perf_counter()
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error and "Traceback" not in error
    assert time.perf_counter() - start < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T"]  # nothing written


def test_the_probe_reads_step_time_off_a_length_fit_at_the_epochs_mean_length():
    from bertnas.training.probe import epoch_seconds_per_step

    lengths = [5, 10, 23]  # SST-2's probe batches: the epoch's mean padded length is 14
    seconds = [0.2 + 0.05 * length for length in lengths]
    assert epoch_seconds_per_step(seconds, lengths, 14.0) == pytest.approx(0.2 + 0.05 * 14)
    assert epoch_seconds_per_step(seconds, lengths, 14.0) > sum(seconds) / 3  # the plain mean under-prices
    # a fit that falls with length is noise: the plain mean; so is a single length
    assert epoch_seconds_per_step([0.9, 0.5, 0.4], lengths, 14.0) == pytest.approx(0.6)
    assert epoch_seconds_per_step([0.3, 0.5], [8, 8], 20.0) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="one padded length per timed step"):
        epoch_seconds_per_step([0.3], [8, 9], 9.0)


def test_probes_time_real_steps_spread_over_the_padded_lengths(teacher, glue_dir):
    from bertnas.data import get_task
    from bertnas.supernet.backbone import load_backbone
    from bertnas.training.evaluate import load_train_dev
    from bertnas.training.probe import _batches, probe_finetune, probe_supernet

    _, tokenizer = load_backbone(str(teacher), num_labels=2)
    train = load_train_dev(get_task("sst2"), tokenizer, str(glue_dir), None, None, None, SEARCH_SPLIT).train
    batches = _batches(train, 16, 0, 3, 0)
    assert len(batches.timed) == 3 and batches.lengths == sorted(batches.lengths)  # quantiles, shortest first
    assert batches.lengths[0] < batches.lengths[-1]  # a spread to fit against
    assert batches.lengths[0] <= batches.mean_length <= batches.lengths[-1]
    assert batches.per_epoch == -(-len(train) // 16)

    config = FinetuneConfig(
        task="sst2", backbone=str(teacher), batch_size=16, glue_dir=str(glue_dir), search_split=SEARCH_SPLIT
    )
    timing = probe_finetune(config)
    assert timing.seconds_per_step > 0 and timing.steps == config.total_steps(batches.per_epoch)
    supernet_timing = probe_supernet(_train_config(teacher, glue_dir))
    assert supernet_timing.seconds_per_step > 0 and supernet_timing.total_seconds > supernet_timing.seconds_per_step
