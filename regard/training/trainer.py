"""The training loop: :func:`train`, one readable loop, plus small helpers.

Teacher forcing on token-budget batches, Adam, gradient clipping, a learning-rate
schedule, validation loss and BLEU every ``eval_every`` steps, ``best/`` and ``last/``
checkpoints, early stopping, and exact resumption, on any device, in one process or
several (:mod:`regard.training.distributed`: every rank runs this same loop on its share
of each batch; rank 0 validates, saves and reports).
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

from regard.checkpoint import load_model_dir, save_model_dir
from regard.config import Config, differing_keys
from regard.data.batching import Batch, Example, batch_indices, collate, plan_epoch
from regard.data.binarise import FileSource, MemorySource, Prepared, ensure_prepared, open_prepared, prepared_dir
from regard.data.prepare import Pairs, build_tokenizers, encode_pairs, spread, validation_pairs
from regard.data.shards import ShardedPairs
from regard.data.tokenizer import Tokenizer
from regard.device import resolve_device
from regard.errors import Interrupted, RegardError
from regard.files import recover_folder, replace_folder
from regard.model.seq2seq import Seq2Seq
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
                                    "log_every", "kernel_cache")} | {"data.valid_max_sentences", "data.prepared"}


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
def evaluate(model: Seq2Seq, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer,
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

    def __init__(self, model: Seq2Seq, label_smoothing: float):
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, batch: Batch, scale: float, grad_scale: float) -> torch.Tensor:
        return self.model.training_loss(batch, self.label_smoothing, scale, grad_scale=grad_scale)


def wrap(model: Seq2Seq, cfg: Config, ranks: dist.Ranks, device: torch.device) -> nn.Module:
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
    model: Seq2Seq
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    progress: Progress
    toks: Tokenizers
    pairs: ShardedPairs  # the training pairs, memory-mapped
    valid: Pairs
    valid_examples: list[Example]

    def save(self, name: str, with_state: bool = True) -> None:
        """Write ``out/name`` atomically (with the trainer state for ``last``), on rank 0 only."""
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
        if self.ranks.is_main:
            v_loss, v_bleu = evaluate(self.model, self.cfg, *self.toks, self.valid, self.valid_examples, self.device)
            log.write(step=p.step, epoch=p.epoch, **scalars, valid_loss=v_loss, valid_bleu=v_bleu,
                      elapsed_s=p.elapsed)
            report.write(f"step {p.step}: valid loss {v_loss:.3f}, BLEU {v_bleu:.2f}")
            score = v_bleu if t.keep_best_by == "bleu" else v_loss
            if is_better(score, p.best_score, t.keep_best_by):
                p.best_score, p.bad_evals = score, 0
                self.save("best", with_state=False)
            else:
                p.bad_evals += 1
            self.save("last")
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


def prepare(cfg: Config, ranks: dist.Ranks, device: torch.device, resume: bool,
            data: tuple[Pairs, Pairs] | None, tokenizers: Callable[[Config, Pairs], Tokenizers]) -> Run:
    """Data, tokenizers, model and optimizer, fresh or from ``out/last``."""
    out = Path(cfg.train.out_dir)
    recover_folder(out / "last")
    resume = start_state(out, resume, ranks)
    if resume:  # its saved config (defaults filled in, old keys upgraded) is checked before any data is read
        model, saved, src_tok, tgt_tok = load_model_dir(out / "last")
        check_resumable(cfg, saved, out / "last")
    valid_pairs = (data[1] if data else validation_pairs(cfg)) if ranks.is_main else []
    prepared = training_data(cfg, ranks, data, (src_tok, tgt_tok) if resume else None, tokenizers)
    src_tok, tgt_tok = prepared.tokenizers
    if not resume:
        torch.manual_seed(cfg.train.seed)
        model = Seq2Seq(cfg.model, len(src_tok), len(tgt_tok))
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
               progress, (src_tok, tgt_tok), prepared.pairs, valid_pairs, valid_examples)


def training_data(cfg: Config, ranks: dist.Ranks, data: tuple[Pairs, Pairs] | None, fixed: Tokenizers | None,
                  tokenizers: Callable[[Config, Pairs], Tokenizers]) -> Prepared:
    """The prepared training data: made (or found up to date) by rank 0, then opened by every
    rank. ``fixed``: the tokenizers of a resumed run, which the data must be encoded with."""
    prepared = None
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


def train_step(run: Run, idx: np.ndarray, step: int) -> tuple[float, int]:
    """One update on global batch ``idx`` (B,); returns this rank's part of the (smoothed) loss
    and the batch's target tokens."""
    share, weight, total = rank_share(idx, run.pairs, run.ranks)
    batch = Batch.from_numpy(*run.pairs.padded(share)).to(run.device)
    torch.manual_seed(run.cfg.train.seed * 1_000_003 + step * 64 + run.ranks.rank)  # dropout, any world size
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(step, run.cfg)
    run.optimizer.zero_grad(set_to_none=True)
    grad_scale = run.scaler.get_scale() if run.scaler else 1.0
    with run.autocast():
        loss = run.net(batch, weight, grad_scale)
    (run.scaler.scale(loss) if run.scaler else loss).backward()
    if run.scaler:
        run.scaler.unscale_(run.optimizer)
    if run.cfg.train.clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.train.clip_norm)
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    return loss.detach().item() / run.ranks.world, total


def loop(run: Run, show_progress: bool, on_step: OnStep | None = None) -> Path:
    """The training loop proper, from where ``run.progress`` stands (every rank runs it)."""
    cfg, progress, out, t = run.cfg, run.progress, run.out, run.cfg.train
    main = run.ranks.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    log = ScalarLog(out, t.log) if main else None
    report = Reporter(t.max_steps, progress.step, t.max_minutes, Reporter.choose(show_progress, t.log_every)
                      if main else "quiet", t.log_every)
    start, tokens, busy = time.time() - progress.elapsed, 0, 1e-9
    with stop_requests() as stop:
        for idx in epoch_batches(run.pairs, cfg, progress):
            tic = time.perf_counter()
            loss, n_tokens = train_step(run, idx, progress.step + 1)
            progress.step += 1
            progress.elapsed = time.time() - start
            time_up = main and 0 < t.max_minutes * 60 <= progress.elapsed
            loss, stopping, time_up = dist.agree([loss, float(stop[0]), float(time_up)], run.device)
            tokens, busy = tokens + n_tokens, busy + time.perf_counter() - tic
            avg = progress.train_loss
            progress.train_loss = loss if avg is None else 0.95 * avg + 0.05 * loss
            report.update(progress.step, progress.train_loss, tokens / busy, progress.epoch, progress.elapsed)
            if on_step is not None and main:
                on_step(progress.step, n_tokens)
            done = progress.step >= t.max_steps or time_up > 0
            if done or progress.step % t.eval_every == 0:
                done = run.validate(log, report, lr=lr_at(progress.step, cfg), train_loss=progress.train_loss,
                                    tok_s=tokens / busy) or done
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
                run.validate(log, report, lr=lr_at(progress.step, cfg), train_loss=progress.train_loss,
                             tok_s=tokens / busy)
    report.close()
    if log is not None:
        log.close()
    return out
