"""The training loop: :func:`train`, one readable loop, plus small helpers.

Teacher forcing on token-budget batches, Adam, gradient clipping, a learning-rate
schedule, validation loss and BLEU every ``eval_every`` steps, ``best/`` and ``last/``
checkpoints, early stopping, guided alignment (``train.guided_alignment_weight``: each
batch's guide, :mod:`regard.data.guides`, from the links of its pairs), and exact
resumption, on any device, in one process or several (:mod:`regard.training.distributed`:
every rank runs this same loop on its share of each batch; rank 0 validates, saves and
reports).

A broken model is never saved: a step whose loss or gradient is NaN or infinite is not
applied, and stops training with an error naming it (or is skipped and counted, up to
``train.skip_nonfinite``); weights that are not finite are never validated or written.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import sacrebleu
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from regard.averaging import keep_step_checkpoint
from regard.checkpoint import load_model_dir, nonfinite_tensor, save_model_dir, skeleton
from regard.config import Config, differing_keys, validate
from regard.data.batching import Batch, Example, batch_indices, collate, plan_epoch
from regard.data.binarise import FileSource, MemorySource, Prepared, ensure_prepared, open_prepared, prepared_dir
from regard.data.guides import batch_guide
from regard.data.prepare import Pairs, build_tokenizers, encode_pairs, spread, validation_pairs
from regard.data.shards import ShardedPairs
from regard.data.tokenizer import Tokenizer
from regard.device import resolve_device
from regard.errors import Interrupted, RegardError
from regard.files import check_folder_target, recover_folder, replace_folder
from regard.model.archs import build_model
from regard.model.base import EncoderDecoder
from regard.runtime import bound_kernel_caches, reuse_freed_memory
from regard.training import distributed as dist
from regard.training.logger import ScalarLog
from regard.training.amp import Autocast, autocast_for
from regard.training.progress import Reporter
from regard.training.shared_reduce import SharedMemoryReducer, shared_memory_hook
from regard.training.state import load_trainer_state, save_trainer_state
from regard.translator import Translator

Tokenizers = tuple[Tokenizer, Tokenizer]
OnStep = Callable[[int, int], None]  # (step, target tokens of the step's global batch), on rank 0
# Keys a resumed run may change: when and how to stop, report and run, not what is learnt.
RESUMABLE = {f"train.{k}" for k in ("out_dir", "device", "threads", "workers", "max_steps", "max_epochs",
                                    "max_minutes", "eval_every", "save_every", "eval_beam", "patience", "log",
                                    "log_every", "kernel_cache", "skip_nonfinite",
                                    "keep_checkpoints")} | {"data.valid_max_sentences", "data.prepared"}


@dataclass
class Progress:
    """Where training stands; saved in ``trainer.json`` and restored by ``--resume``."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float | None = None
    bad_evals: int = 0
    elapsed: float = 0.0
    train_loss: float | None = None  # moving average, logged and shown in the progress bar
    guided_loss: float | None = None  # moving average of the guided-alignment loss (logged as train_guided)
    skipped: int = 0  # steps not applied for a NaN/inf loss or gradient (train.skip_nonfinite)

    @property
    def shown_loss(self) -> float:
        """The moving average of the training loss, NaN before the first applied step."""
        return math.nan if self.train_loss is None else self.train_loss


def lr_at(step: int, cfg: Config) -> float:
    """Learning rate for ``step`` (1-based): linear warm-up, then the schedule."""
    t = cfg.train
    if t.warmup_steps and step <= t.warmup_steps:
        return t.lr * step / t.warmup_steps
    if t.schedule == "inverse_sqrt":
        return max(t.min_lr, t.lr * math.sqrt(max(t.warmup_steps, 1) / step))
    if t.schedule == "linear":
        remaining = max(0.0, 1 - (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
        return t.min_lr + (t.lr - t.min_lr) * remaining
    return t.lr


@torch.no_grad()
def evaluate(model: EncoderDecoder, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer,
             valid: Pairs, valid_examples: list[Example], device: torch.device | None = None) -> tuple[float, float]:
    """Validation loss per token (no smoothing) and cased sacreBLEU (on ``device``: the model's by default)."""
    device = device or next(model.parameters()).device
    model.eval()
    total, tokens = 0.0, 0
    for idx in batch_indices(valid_examples, cfg.train.batch_tokens, seed=0, epoch=0):
        batch = collate([valid_examples[i] for i in idx]).to(device)
        total += float(model.loss(batch)) * batch.n_tokens
        tokens += batch.n_tokens
    subset = spread(valid, cfg.data.valid_max_sentences)
    hyps = Translator(model, cfg, src_tok, tgt_tok).translate([s for s, _ in subset], beam=cfg.train.eval_beam)
    bleu = sacrebleu.corpus_bleu([h.text for h in hyps], [[t for _, t in subset]]).score
    model.train()
    return total / max(tokens, 1), bleu


@contextmanager
def stop_requests() -> Iterator[list[bool]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step (main thread only)."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    handler = lambda signum, frame: flag.__setitem__(0, True)  # noqa: E731
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def is_better(score: float, best: float | None, by: str) -> bool:
    return best is None or (score > best if by == "bleu" else score < best)


class LossOf(nn.Module):
    """The model's training loss as a module's forward, the call DDP wraps."""

    def __init__(self, model: EncoderDecoder, label_smoothing: float):
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, batch: Batch, scale: float,
                grad_scale: float) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The loss; for a batch with a guide, the loss and the guided-alignment loss."""
        if batch.guide is None:
            return self.model.training_loss(batch, self.label_smoothing, scale, grad_scale=grad_scale)
        return self.model.guided_training_loss(batch, self.label_smoothing, scale, grad_scale=grad_scale)


def wrap(model: EncoderDecoder, cfg: Config, ranks: dist.Ranks, device: torch.device) -> nn.Module:
    """The module a step calls: the loss alone, or under DDP when there are several ranks."""
    net = LossOf(model, cfg.train.label_smoothing)
    if ranks.world == 1:
        return net
    ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                  gradient_as_bucket_view=True)
    compression = cfg.train.grad_compression
    if compression == "bf16" and device.type != "cuda":
        raise RegardError("train.grad_compression: bf16 needs NCCL (CUDA devices); use fp16 or none on CPUs")
    if compression != "none":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        ddp.register_comm_hook(None, getattr(default_hooks, f"{compression}_compress_hook"))
    elif device.type == "cpu" and ranks.local_world == ranks.world:  # one machine: no need for TCP
        ddp.register_comm_hook(SharedMemoryReducer.create(ranks.rank, ranks.world), shared_memory_hook)
    return ddp


@dataclass
class Run:
    """Everything one training run works with."""

    cfg: Config
    out: Path
    ranks: dist.Ranks
    device: torch.device
    autocast: Autocast
    model: EncoderDecoder
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    progress: Progress
    toks: Tokenizers
    pairs: ShardedPairs  # the training pairs, memory-mapped
    valid: Pairs
    valid_examples: list[Example]
    word_starts: tuple[np.ndarray, np.ndarray] | None = None  # guided alignment: the subwords opening a word
    guided: float | None = None  # this rank's part of the last step's guided-alignment loss (None: not guided)

    def check_finite(self, name: str) -> None:
        """Raise :class:`RegardError` if a weight holds NaN or inf (every rank has the same weights,
        so every rank that checks raises): ``out/name`` is then not written."""
        bad = nonfinite_tensor(self.model.state_dict())
        if bad is not None:
            raise RegardError(f"training stopped at step {self.progress.step}: weight '{bad}' holds NaN or inf; "
                              f"{self.out / name} was not written (earlier checkpoints are kept). Lower train.lr")

    def save(self, name: str, with_state: bool = True) -> None:
        """Write ``out/name`` atomically (with the trainer state for ``last``), on rank 0 only."""
        self.check_finite(name)
        if not self.ranks.is_main:
            return

        def fill(folder: Path) -> None:
            save_model_dir(folder, self.model, self.cfg, *self.toks)
            if with_state:
                scaler = self.scaler.state_dict() if self.scaler else None
                save_trainer_state(folder, self.optimizer, {**self.progress.__dict__, "scaler": scaler})
        replace_folder(self.out / name, fill)

    def validate(self, log: ScalarLog, report: Reporter, **scalars: float) -> bool:
        """Evaluate, log, save ``best``/``last`` (rank 0); True, on every rank, when early stopping says stop."""
        t, p = self.cfg.train, self.progress
        stop = 0.0
        self.check_finite("best")
        if self.ranks.is_main:
            v_loss, v_bleu = evaluate(self.model, self.cfg, *self.toks, self.valid, self.valid_examples, self.device)
            log.write(step=p.step, epoch=p.epoch, **scalars, valid_loss=v_loss, valid_bleu=v_bleu,
                      elapsed_s=p.elapsed)
            guided = f", guided alignment loss {scalars['train_guided']:.3f}" if "train_guided" in scalars else ""
            report.write(f"step {p.step}: valid loss {v_loss:.3f}, BLEU {v_bleu:.2f}{guided}")
            score = v_bleu if t.keep_best_by == "bleu" else v_loss
            if is_better(score, p.best_score, t.keep_best_by):
                p.best_score, p.bad_evals = score, 0
                self.save("best", with_state=False)
            else:
                p.bad_evals += 1
            self.save("last")
            if t.keep_checkpoints:
                keep_step_checkpoint(self.out, p.step, t.keep_checkpoints,
                                     lambda folder: save_model_dir(folder, self.model, self.cfg, *self.toks))
            stop = float(t.patience > 0 and p.bad_evals >= t.patience)
        return dist.agree([stop], self.device)[0] > 0


def train(cfg: Config, resume: bool = False, data: tuple[Pairs, Pairs] | None = None,
          show_progress: bool = True, on_step: OnStep | None = None,
          tokenizers: Callable[[Config, Pairs], Tokenizers] = build_tokenizers) -> Path:
    """Train (or resume) the model described by ``cfg``; return the run folder.

    ``data`` passes (train, valid) pairs in memory instead of reading ``cfg.data`` files (the
    training pairs are prepared on disk all the same, normalised but not cleaned).
    ``train.workers`` > 1 starts that many processes on this machine (this one is rank 0);
    under torchrun, every process calls this. ``on_step`` is called on rank 0 after every
    step; ``tokenizers`` builds the subword models of a new run. Raises
    :class:`Interrupted` after saving on Ctrl-C/SIGTERM.
    """
    validate(cfg)
    if cfg.train.workers > 1 and not dist.launched():
        with dist.LocalRanks(cfg.train.workers, train_rank, (cfg, None, resume, data, False)) as ranks:
            return train_rank(cfg, ranks, resume, data, show_progress, on_step, tokenizers)
    return train_rank(cfg, dist.Ranks.from_env(), resume, data, show_progress, on_step, tokenizers)


def train_rank(cfg: Config, ranks: dist.Ranks | None, resume: bool, data: tuple[Pairs, Pairs] | None,
               show_progress: bool, on_step: OnStep | None = None,
               tokenizers: Callable[[Config, Pairs], Tokenizers] = build_tokenizers) -> Path:
    """One rank's part of :func:`train` (``ranks`` None: from the environment)."""
    ranks = ranks or dist.Ranks.from_env()
    device = setup_process(cfg, ranks)
    dist.init_process_group(ranks, device)
    run = None
    try:
        run = prepare(cfg, ranks, device, resume, data, tokenizers)
        if run.progress.step < cfg.train.max_steps:
            loop(run, show_progress and ranks.is_main, on_step)
        run.net = None  # DDP holds the process group: it goes first, while every rank is there
        dist.close_process_group(wait_for_all=True)
        return run.out
    except torch.distributed.DistError as err:  # a rank has gone: say so in a line, not a C++ traceback
        raise RegardError(f"rank {ranks.rank} lost the other training processes: "
                          f"{str(err).splitlines()[0]}") from None
    except RegardError as err:
        raise RegardError(f"[rank {ranks.rank}] {err}" if ranks.rank else str(err)) from None
    finally:
        if run is not None:
            run.net = None
        dist.close_process_group()


def setup_process(cfg: Config, ranks: dist.Ranks) -> torch.device:
    """The device of this rank, its thread count, and the CPU-only tuning."""
    t = cfg.train
    device = resolve_device(t.device, "train.device")
    if device.type == "cuda" and ranks.local_world > 1:
        device = torch.device("cuda", ranks.local_rank)  # one GPU per process on a machine
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cpu":
        bound_kernel_caches(t.kernel_cache)
        reuse_freed_memory()
    torch.set_num_threads(t.threads or max(1, (os.cpu_count() or 1) // ranks.local_world))
    return device


def check_resumable(cfg: Config, saved: Config, folder: Path) -> None:
    """A resumed run must learn the same thing: an error naming every key that differs."""
    changed = [k for k in differing_keys(saved.to_dict(), cfg.to_dict()) if k not in RESUMABLE]
    if changed:
        raise RegardError(f"the config differs from the run being resumed ({folder}) in: {', '.join(changed)}; "
                          "train into another train.out_dir, or undo those changes")


def start_state(out: Path, resume: bool, ranks: dist.Ranks) -> bool:
    """Whether to resume: asked for, or a job that torchrun restarted after a failure."""
    last = out / "last"
    restarted = dist.restarted() and (last / "trainer.json").is_file()
    if last.exists() and not (resume or restarted):
        raise RegardError(f"{out} already holds a training run: use --resume to continue it, "
                          "or choose another train.out_dir")
    if (resume or restarted) and not (last / "trainer.json").is_file():
        raise RegardError(f"nothing to resume: {last} has no training state")
    if restarted and ranks.is_main:
        print(f"torchrun restarted this job: resuming from {last}", file=sys.stderr, flush=True)
    return resume or restarted


def available_memory() -> int | None:
    """Bytes of memory available on this machine (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_room(cfg: Config, out: Path, resume: bool, ranks: dist.Ranks) -> None:
    """Before any data is read (on rank 0; every rank raises): the model ``cfg`` describes fits in
    memory, and ``out`` takes files with room for its checkpoints (best/, last/ and last/'s next
    copy: weights and two Adam moments, 4 bytes a parameter each)."""
    problem = None
    if ranks.is_main:
        params = skeleton(cfg.model, cfg.tokenizer.src_vocab_size, cfg.tokenizer.tgt_vocab_size).count_parameters()
        memory, need = available_memory(), 16 * params * ranks.local_world  # weights, gradients, moments
        try:
            if memory is not None and need > memory:
                raise RegardError(f"config: the model has {params:,} parameters; training them needs about "
                                  f"{need / 2**30:.1f} GiB of memory, {memory / 2**30:.1f} GiB are available "
                                  "(smaller model sizes or vocabularies?)")
            check_folder_target(out, "train.out_dir", need_bytes=4 * params * (3 if resume else 7))
        except RegardError as err:
            problem = str(err)
    problem = dist.from_main(problem)
    if problem:
        raise RegardError(problem)


def prepare(cfg: Config, ranks: dist.Ranks, device: torch.device, resume: bool,
            data: tuple[Pairs, Pairs] | None, tokenizers: Callable[[Config, Pairs], Tokenizers]) -> Run:
    """Data, tokenizers, model and optimizer, fresh or from ``out/last``."""
    out = Path(cfg.train.out_dir)
    recover_folder(out / "last")
    resume = start_state(out, resume, ranks)
    check_room(cfg, out, resume, ranks)
    if resume:  # its saved config (defaults filled in, old keys upgraded) is checked before any data is read
        model, saved, src_tok, tgt_tok = load_model_dir(out / "last")
        check_resumable(cfg, saved, out / "last")
    valid_pairs = (data[1] if data else validation_pairs(cfg)) if ranks.is_main else []
    prepared = training_data(cfg, ranks, data, (src_tok, tgt_tok) if resume else None, tokenizers)
    src_tok, tgt_tok = prepared.tokenizers
    if not resume:
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, len(src_tok), len(tgt_tok))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, fused=device.type in ("cpu", "cuda"))
    autocast = autocast_for(cfg.train.precision, device)
    scaler = autocast.scaler()
    progress = Progress()
    if resume:
        state = load_trainer_state(out / "last", optimizer)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        progress = Progress(**{k: v for k, v in state.items() if k in Progress.__dataclass_fields__})
    valid_examples = encode_pairs(valid_pairs, src_tok, tgt_tok, 10**9) if ranks.is_main else []
    return Run(cfg, out, ranks, device, autocast, model, wrap(model, cfg, ranks, device), optimizer, scaler,
               progress, (src_tok, tgt_tok), prepared.pairs, valid_pairs, valid_examples,
               guide_tables(cfg, prepared))


def guide_tables(cfg: Config, prepared: Prepared) -> tuple[np.ndarray, np.ndarray] | None:
    """For guided alignment (``train.guided_alignment_weight`` > 0), the pieces of each tokenizer
    that open a word (:func:`regard.data.guides.batch_guide`); None when not guided."""
    if not cfg.train.guided_alignment_weight:
        return None
    if not prepared.pairs.has_links:
        raise RegardError(f"the prepared training data in {prepared.folder} holds no word links: prepare it "
                          f"again with data.train_links set (regard data prepare)")
    return prepared.tokenizers[0].word_starts(), prepared.tokenizers[1].word_starts()


def training_data(cfg: Config, ranks: dist.Ranks, data: tuple[Pairs, Pairs] | None, fixed: Tokenizers | None,
                  tokenizers: Callable[[Config, Pairs], Tokenizers]) -> Prepared:
    """The prepared training data: made (or found up to date) by rank 0, then opened by every
    rank. ``fixed``: the tokenizers of a resumed run, which the data must be encoded with."""
    prepared = None
    if data and cfg.data.train_links:
        raise RegardError("config: 'data.train_links' gives the links of the training files, but the training "
                          "pairs were given in memory")
    if ranks.is_main:
        source = MemorySource(data[0]) if data else FileSource.from_config(cfg)
        prepared = ensure_prepared(cfg, source, fixed, tokenizers)
    dist.from_main(None)  # the other ranks wait until it is there
    if prepared is not None:
        return prepared
    try:
        return open_prepared(prepared_dir(cfg), fixed)
    except RegardError as err:
        raise RegardError(f"{err} (on several machines, data.prepared must be a folder they share, or "
                          "prepared on each with regard data prepare)") from None


def epoch_batches(pairs: ShardedPairs, cfg: Config, progress: Progress) -> Iterator[np.ndarray]:
    """Global batches from where ``progress`` stands to the end of the last epoch, advancing it."""
    while progress.epoch < cfg.train.max_epochs:
        plan = plan_epoch(pairs.src_len, pairs.tgt_len, cfg.train.batch_tokens, cfg.train.seed, progress.epoch)
        while progress.batch_in_epoch < len(plan):
            progress.batch_in_epoch += 1
            yield plan.batch(progress.batch_in_epoch - 1)
        progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0


def rank_share(idx: np.ndarray, pairs: ShardedPairs, ranks: dist.Ranks) -> tuple[np.ndarray, float, int]:
    """This rank's sentences of global batch ``idx`` (B,), the weight of its mean loss, and the
    batch's target tokens. Weights make DDP's average of the ranks' gradients the gradient of
    the whole batch's mean loss; a rank with no sentence computes one with weight 0."""
    cost = pairs.tgt_len[idx].astype(np.int64) + 1
    total = int(cost.sum())
    share = idx[ranks.rank::ranks.world]
    if not len(share):
        return idx[:1], 0.0, total
    return share, ranks.world * int(cost[ranks.rank::ranks.world].sum()) / total, total


def grad_norm(model: nn.Module, clip_norm: float) -> torch.Tensor:
    """The gradients' total norm (a 0-d tensor), clipping them to ``clip_norm`` when it is above 0."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, clip_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params])


def poisoned(loss: torch.Tensor) -> torch.Tensor:
    """``loss``, with a NaN gradient wherever its value is NaN or infinite (even where the loss's
    own gradient would be finite): DDP's all-reduce then carries one rank's bad loss into every
    rank's gradients, so that every rank sees it in the gradient norm, with no message between
    them. A finite loss is multiplied by exactly 1."""
    return loss * torch.where(torch.isfinite(loss.detach()), 1.0, math.nan)


def step_is_finite(loss: torch.Tensor, norm: torch.Tensor, run: Run) -> bool:
    """Whether the step may be applied: the loss and the gradient norm are finite, on every rank
    (the same answer on each: :func:`poisoned`). With a gradient scaler (fp16), whose overflows
    make gradients infinite as a matter of course and are its own to skip, only the losses count,
    agreed between the ranks."""
    if run.scaler is None:
        return bool(torch.isfinite(torch.stack([loss.detach().float(), norm.float()])).all())
    finite = bool(torch.isfinite(loss.detach()))
    if run.ranks.world > 1:  # every rank takes the same decision, or their models would part
        finite = dist.agree([float(not finite)], run.device)[0] == 0
    return finite


def count_nonfinite(run: Run, report: Reporter) -> None:
    """After a step that was not applied for a NaN/inf loss or gradient: stop training with an
    error naming the step, unless ``train.skip_nonfinite`` allows one more such step."""
    p, limit = run.progress, run.cfg.train.skip_nonfinite
    p.skipped += 1
    if p.skipped > limit:
        counted = f" ({p.skipped} such steps, more than train.skip_nonfinite: {limit})" if limit else ""
        raise RegardError(f"training stopped at step {p.step}: the loss or a gradient is NaN or infinite{counted}; "
                          "no checkpoint holds it. Lower train.lr, or set train.skip_nonfinite: N to skip up to "
                          "N such steps")
    if run.ranks.is_main:
        report.write(f"step {p.step}: the loss or a gradient is NaN or infinite; step skipped "
                     f"({p.skipped} of at most {limit})")


def train_step(run: Run, idx: np.ndarray, step: int) -> tuple[float | None, int]:
    """One update on global batch ``idx``; returns this rank's part of the (smoothed) loss
    (None, on every rank, when a loss or the gradient was NaN or infinite and the update was
    not applied) and the batch's target tokens. With guided alignment the update follows
    that loss + ``train.guided_alignment_weight`` × the guided-alignment loss, whose part is
    left in ``run.guided``."""
    share, weight, total = rank_share(idx, run.pairs, run.ranks)
    arrays = run.pairs.padded(share)
    batch = Batch.from_numpy(*arrays)
    if run.word_starts is not None:
        batch.guide = torch.from_numpy(batch_guide(arrays[0], arrays[3], run.pairs.links(share), run.word_starts))
    batch = batch.to(run.device)
    torch.manual_seed(run.cfg.train.seed * 1_000_003 + step * 64 + run.ranks.rank)  # dropout, any world size
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(step, run.cfg)
    run.optimizer.zero_grad(set_to_none=True)
    grad_scale = run.scaler.get_scale() if run.scaler else 1.0
    with run.autocast():
        out = run.net(batch, weight, grad_scale)
        part, guided = (out, None) if batch.guide is None else out  # the translation loss, the guided one
        loss = poisoned(part if guided is None else part + run.cfg.train.guided_alignment_weight * guided)
    (run.scaler.scale(loss) if run.scaler else loss).backward()
    if run.scaler:
        run.scaler.unscale_(run.optimizer)
    norm = grad_norm(run.model, run.cfg.train.clip_norm)
    if not step_is_finite(loss, norm, run):
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler:
            run.scaler.update()
        return None, total
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    if guided is not None:
        run.guided = guided.detach().item() / run.ranks.world
    return part.detach().item() / run.ranks.world, total


def moving_average(average: float | None, value: float) -> float:
    """The training loss's moving average after a step whose loss was ``value``."""
    return value if average is None else 0.95 * average + 0.05 * value


def train_scalars(run: Run, tok_s: float) -> dict[str, float]:
    """What an evaluation logs of training: the learning rate, the loss (and the guided-alignment
    loss, when guided), tokens per second."""
    p = run.progress
    guided = {} if run.word_starts is None else {"train_guided": math.nan if p.guided_loss is None else p.guided_loss}
    return {"lr": lr_at(p.step, run.cfg), "train_loss": p.shown_loss, **guided, "tok_s": tok_s}


def loop(run: Run, show_progress: bool, on_step: OnStep | None = None) -> Path:
    """The training loop proper, from where ``run.progress`` stands (every rank runs it)."""
    cfg, progress, out, t = run.cfg, run.progress, run.out, run.cfg.train
    main = run.ranks.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    guided = run.word_starts is not None
    log = ScalarLog(out, t.log, start_step=progress.step, guided=guided) if main else None
    report = Reporter(t.max_steps, progress.step, t.max_minutes, Reporter.choose(show_progress, t.log_every)
                      if main else "quiet", t.log_every)
    start, tokens, busy = time.time() - progress.elapsed, 0, 1e-9
    with stop_requests() as stop:
        for idx in epoch_batches(run.pairs, cfg, progress):
            tic = time.perf_counter()
            loss, n_tokens = train_step(run, idx, progress.step + 1)
            progress.step += 1
            if loss is None:
                count_nonfinite(run, report)
            progress.elapsed = time.time() - start
            time_up = main and 0 < t.max_minutes * 60 <= progress.elapsed
            agreed, stopping, time_up, *guided_part = dist.agree(
                [loss or 0.0, float(stop[0]), float(time_up)] + ([run.guided or 0.0] if guided else []), run.device)
            tokens, busy = tokens + n_tokens, busy + time.perf_counter() - tic
            if loss is not None:
                progress.train_loss = moving_average(progress.train_loss, agreed)
                if guided:
                    progress.guided_loss = moving_average(progress.guided_loss, guided_part[0])
            report.update(progress.step, progress.shown_loss, tokens / busy, progress.epoch, progress.elapsed)
            if on_step is not None and main:
                on_step(progress.step, n_tokens)
            done = progress.step >= t.max_steps or time_up > 0
            if done or progress.step % t.eval_every == 0:
                done = run.validate(log, report, **train_scalars(run, tokens / busy)) or done
                tokens, busy = 0, 1e-9
            elif t.save_every and progress.step % t.save_every == 0:
                run.save("last")
            if stopping > 0 and not done:
                run.save("last")
                report.close()
                raise Interrupted(f"stopped at step {progress.step}; saved {out / 'last'} "
                                  "(continue with --resume)")
            if done:
                break
        else:  # every epoch used up (and the last step not just validated)
            if progress.step % t.eval_every:
                run.validate(log, report, **train_scalars(run, tokens / busy))
    report.close()
    if log is not None:
        log.close()
    return out
