"""The training loop: P x K batches -> embeddings -> miner + loss -> AdamW step, with checkpoints.

Determinism on CPU: the model is initialised after ``torch.manual_seed(seed)``, batches come from
:class:`~training.sampler.PKSampler` (a pure function of seed and epoch), the learning rate is a
pure function of the step, and a checkpoint carries everything else that changes between steps
(weights, optimizer and grad-scaler state, torch's RNG state for dropout, the FAISS negatives'
embeddings, the running epoch statistics). Resuming from step ``s`` therefore continues exactly as
the uninterrupted run would have (tests check the weights are bit-identical).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol

import torch

from training.augment import random_shift
from training.config import TrainConfig
from training.data import ImageSet, check_trainable
from training.errors import CheckpointError, TrainingConfigError
from training.evaluate import embed_image_set
from training.export import atomic_torch_save
from training.losses import MetricCriterion
from vsearch.metrics.retrieval import retrieval_metrics
from training.miners import FaissHardNegatives
from training.model import EmbeddingNet, ModelSpec, build_model, default_preprocessing
from training.sampler import PKSampler
from vsearch.errors import VSearchError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vsearch.train-checkpoint"
# Below this many parameters a model trains on one CPU thread: its convolutions are too small to
# split, and on busy cores two OpenMP threads spin-wait on each other (the small CNN on digits,
# load 13 on 2 cores: 1.29 s a step on torch's 2 threads, about 0.1 s on one).
ONE_THREAD_PARAMS = 1_000_000
MIN_LR_RATIO = 0.01  # the cosine decays to 1% of the base rate, not to 0: the last steps still learn


class TrainingInterrupted(VSearchError):
    """Ctrl-C during training; the message says where the checkpoint is and how to resume."""

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@dataclass
class EpochLog:
    epoch: int
    steps: int
    loss: float  # mean over the epoch's batches that had tuples
    active_fraction: float  # mean fraction of mined tuples with non-zero loss
    empty_batches: int  # batches where the miner found no valid tuple (loss 0, no update)
    lr: float
    seconds: float
    val_recall_at_1: float | None = None
    val_map_at_r: float | None = None


class TrainProgress(Protocol):
    def start(self, total_steps: int, done_steps: int) -> None: ...
    def step(self, step: int, loss: float, active_fraction: float, lr: float) -> None: ...
    def epoch_end(self, log: EpochLog) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def start(self, total_steps: int, done_steps: int) -> None:
        pass

    def step(self, step: int, loss: float, active_fraction: float, lr: float) -> None:
        pass

    def epoch_end(self, log: EpochLog) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class FitResult:
    model: EmbeddingNet
    spec: ModelSpec
    history: list[EpochLog]
    steps: int
    empty_batches: int
    seconds: float  # wall time of this process's part of the run
    resumed_from: int | None = None
    train_classes: list[str] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights the model holds (best held-out MAP@R)
    stopped_early: bool = False  # ``patience`` epochs passed without a better held-out MAP@R


def model_spec(cfg: TrainConfig) -> ModelSpec:
    return ModelSpec(cfg.backbone, cfg.embedding_dim, default_preprocessing(cfg.backbone, cfg.image_size))


def max_shift(cfg: TrainConfig, spec: ModelSpec) -> int:
    """Largest random shift of a training image in pixels: ``cfg.shift`` of the input size."""
    return int(round(cfg.shift * spec.preprocessing.image_size))


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``base`` to ``MIN_LR_RATIO * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # no decay on biases and normalisation scales: shrinking them to 0 regularises nothing useful
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingConfigError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(device)


class _EpochStats:
    def __init__(self, state: dict | None = None):
        s = state or {}
        self.loss_sum = float(s.get("loss_sum", 0.0))
        self.active_sum = float(s.get("active_sum", 0.0))
        self.counted = int(s.get("counted", 0))
        self.empty = int(s.get("empty", 0))
        self.steps = int(s.get("steps", 0))
        self.seconds = float(s.get("seconds", 0.0))

    def state(self) -> dict:
        return dict(vars(self))


@contextlib.contextmanager
def _threads_for(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """One intra-op thread while a small model trains on the CPU (see ONE_THREAD_PARAMS)."""
    before = torch.get_num_threads()
    small = device.type == "cpu" and sum(p.numel() for p in model.parameters()) < ONE_THREAD_PARAMS
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def fit(cfg: TrainConfig, train: ImageSet, val: ImageSet | None = None,
        progress: TrainProgress | None = None) -> FitResult:
    """Train an embedding model on ``train`` (classes of 2+ images); evaluate on ``val`` per epoch.

    With ``cfg.resume`` the run continues from ``cfg.checkpoint_path``. Ctrl-C saves a checkpoint
    and raises :class:`TrainingInterrupted`.
    """
    cfg = cfg.with_recipe()  # settings left to ``auto`` by a caller that did not look at the data
    cfg.validate()
    check_trainable(train)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # model init (and dropout) draw from the global generator
    model = build_model(model_spec(cfg), cfg.weights).to(device)
    with _threads_for(model, device):
        return _fit(cfg, model, train, val, progress)


def _fit(cfg: TrainConfig, model: EmbeddingNet, train: ImageSet, val: ImageSet | None,
         progress: TrainProgress | None) -> FitResult:
    progress = progress or NoProgress()
    device = resolve_device(cfg.device)
    amp = cfg.amp and device.type == "cuda"
    spec = model_spec(cfg)
    if spec.preprocessing != train.preprocessing:
        raise TrainingConfigError("the training images were preprocessed for another input size/normalisation "
                                  f"than {spec.backbone} at {spec.preprocessing.image_size}px")

    model.train()
    criterion = MetricCriterion(cfg.loss, cfg.miner, cfg.margin, seed=cfg.seed)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    sampler = PKSampler(train.targets, cfg.classes_per_batch, cfg.samples_per_class, cfg.steps_per_epoch, cfg.seed)
    if sampler.p < cfg.classes_per_batch:
        log.warning("only %d classes can be sampled: batches hold %d classes, not %d",
                    sampler.p, sampler.p, cfg.classes_per_batch)
    steps_per_epoch = len(sampler)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_fraction * total_steps)
    refresh_every = cfg.refresh_every or steps_per_epoch
    bank = FaissHardNegatives(train.targets, cfg.cross_batch_negatives) if cfg.cross_batch_negatives else None
    fingerprint = train.fingerprint()

    step, history, stats, resumed_from = 0, [], _EpochStats(), None
    # early stopping: the weights of the epoch with the best held-out MAP@R, and whether to stop
    best: dict = {"epoch": None, "map_at_r": None, "model": None, "stopped": False}
    ckpt_path = cfg.checkpoint_path
    if cfg.resume:
        state = load_checkpoint(ckpt_path)
        _check_resumable(state, cfg, fingerprint, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        criterion.set_rng_state(state["criterion_rng"])
        if bank is not None:
            bank.load_state_dict(state["bank"])
        step = resumed_from = int(state["step"])
        history = [EpochLog(**h) for h in state["history"]]
        stats = _EpochStats(state["epoch_stats"])
        best = dict(state.get("best") or best)
        log.info("resumed from %s at step %d/%d", ckpt_path, step, total_steps)

    def save(rng: tuple[torch.Tensor, dict] | None = None) -> None:
        torch_rng, criterion_rng = rng or (torch.get_rng_state(), criterion.rng_state())
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "step": step, "config": cfg.resume_key(), "data": fingerprint,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "torch_rng": torch_rng, "criterion_rng": criterion_rng,
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "bank": bank.state_dict() if bank is not None else {}, "best": best,
            "history": [asdict(h) for h in history], "epoch_stats": stats.state(),
        }, ckpt_path)

    started = time.perf_counter()
    epoch_started = time.perf_counter()
    batches: list[list[int]] | None = None
    labels_all = train.targets
    # Where a Ctrl-C lands decides what a checkpoint may hold: "between" steps, the current state;
    # "started" (random numbers drawn, batch-norm statistics moved by the forward pass, no
    # parameter touched), the state from the start of the step; "updating" (parameters
    # half-written), nothing: the previous checkpoint stands.
    phase = "between"
    snapshot: tuple[torch.Tensor, dict] | None = None
    buffers: dict[str, torch.Tensor] = {}
    progress.start(total_steps, step)
    try:
        while step < total_steps and not best["stopped"]:
            snapshot = (torch.get_rng_state(), criterion.rng_state())
            buffers = {k: v.detach().clone() for k, v in model.named_buffers()}  # small: BN statistics
            phase = "started"
            epoch, i = divmod(step, steps_per_epoch)
            if batches is None or i == 0:
                batches = sampler.epoch(epoch)
            if bank is not None and (step % refresh_every == 0 or not bank.ready):
                bank.refresh(embed_image_set(model, train, str(device)))
            index = list(batches[i])
            if bank is not None:
                index += bank.extra(index)
            pixels = random_shift(train.batch(index), max_shift(cfg, spec), cfg.seed, step).to(device, non_blocking=True)
            labels = labels_all[index].to(device)
            lr = lr_at(step, total_steps, cfg.lr, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr

            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                embeddings = model(pixels)  # (B, D), float32 (the model normalises in float32)
            loss, lstats = criterion(embeddings, labels)
            if lstats.tuples == 0:
                phase = "updating"
                stats.empty += 1  # nothing to learn from this batch: counted, no update
            else:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                phase = "updating"
                scaler.unscale_(optimizer)
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                stats.loss_sum += float(loss.detach())
                stats.active_sum += lstats.active_fraction
                stats.counted += 1
            stats.steps += 1
            step += 1
            phase = "between"
            progress.step(step, float(loss.detach()), lstats.active_fraction, lr)

            if step % steps_per_epoch == 0:
                stats.seconds += time.perf_counter() - epoch_started
                entry = EpochLog(
                    epoch=epoch + 1, steps=stats.steps,
                    loss=stats.loss_sum / stats.counted if stats.counted else 0.0,
                    active_fraction=stats.active_sum / stats.counted if stats.counted else 0.0,
                    empty_batches=stats.empty, lr=lr, seconds=round(stats.seconds, 3),
                )
                if val is not None and cfg.eval_every_epoch and len(val):
                    r = retrieval_metrics(embed_image_set(model, val, str(device)), val.targets.numpy(), ks=(1,))
                    entry.val_recall_at_1, entry.val_map_at_r = r.recall_at[1], r.map_at_r
                history.append(entry)
                _keep_best(best, entry, model, cfg.patience)
                progress.epoch_end(entry)
                stats, epoch_started = _EpochStats(), time.perf_counter()
                save()
            elif step % cfg.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if phase != "updating":
            stats.seconds += time.perf_counter() - epoch_started
            if phase == "started":
                with torch.no_grad():
                    for name, value in model.named_buffers():
                        value.copy_(buffers[name])
            save(snapshot if phase == "started" else None)
            where = f"checkpoint saved at step {step}/{total_steps} in {ckpt_path}"
        else:
            where = f"the last checkpoint in {ckpt_path} is kept" if os.path.exists(ckpt_path) else "no checkpoint was written"
        raise TrainingInterrupted(f"training interrupted: {where}; run the same command with --resume to continue",
                                  step, ckpt_path if os.path.exists(ckpt_path) else None) from None
    finally:
        progress.stop()

    if best["model"] is not None:
        model.load_state_dict(best["model"])
    model.eval()
    return FitResult(model=model, spec=spec, history=history, steps=step,
                     empty_batches=sum(h.empty_batches for h in history), seconds=time.perf_counter() - started,
                     resumed_from=resumed_from, train_classes=list(train.class_names),
                     best_epoch=best["epoch"], stopped_early=best["stopped"] and step < total_steps)


def _keep_best(best: dict, entry: EpochLog, model: EmbeddingNet, patience: int) -> None:
    """Early stopping on the held-out MAP@R: remember the best epoch's weights (so more epochs never
    make the written model worse) and stop after ``patience`` epochs without a better one."""
    if entry.val_map_at_r is None or entry.val_map_at_r != entry.val_map_at_r:  # no held-out figure (or NaN)
        return
    if best["map_at_r"] is None or entry.val_map_at_r > best["map_at_r"]:
        best.update(epoch=entry.epoch, map_at_r=entry.val_map_at_r,
                    model={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    elif patience and entry.epoch - best["epoch"] >= patience:
        best["stopped"] = True


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"--resume: no checkpoint at {path} (it is written next to --out as OUT.ckpt; "
                              "pass --checkpoint to point elsewhere)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read as a checkpoint: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vsearch training checkpoint")
    return state


def _check_resumable(state: dict, cfg: TrainConfig, fingerprint: str, path: str) -> None:
    saved, now = state["config"], cfg.resume_key()
    differ = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k]]
    if differ:
        raise CheckpointError(f"{path} was made with other settings; resuming would not reproduce the run. "
                              f"Differences: {'; '.join(differ)}")
    if state["data"] != fingerprint:
        raise CheckpointError(f"{path} was made on other training images (files, labels or preprocessing changed)")
