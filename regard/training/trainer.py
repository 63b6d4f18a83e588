"""The training loop: one readable function, :func:`train`, plus small helpers.

Teacher forcing on token-budget batches, Adam, gradient clipping, a
learning-rate schedule, validation loss and BLEU every ``eval_every`` steps,
``best/`` and ``last/`` checkpoints, early stopping, and exact resumption.
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
from typing import Iterator, Sequence, TypeVar

import sacrebleu
import torch
from tqdm import tqdm

from regard.config import Config
from regard.data.batching import Example, batch_indices, collate
from regard.data.cleaning import clean_pairs, format_report
from regard.data.corpora import fill_data_paths
from regard.data.text import iter_parallel, read_parallel
from regard.data.tokenizer import Tokenizer
from regard.errors import Interrupted, RegardError
from regard.model.seq2seq import Seq2Seq
from regard.runtime import bound_kernel_caches, reuse_freed_memory
from regard.checkpoint import load_model_dir, save_model_dir
from regard.files import replace_folder
from regard.training.state import load_trainer_state, save_trainer_state
from regard.training.logger import ScalarLog
from regard.training.parallel import Workers, scaled_backward
from regard.translator import Translator

T = TypeVar("T")

Pairs = list[tuple[str, str]]
TIMED_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"  # no steps ETA when a time limit rules


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


def build_tokenizers(cfg: Config, pairs: Pairs) -> tuple[Tokenizer, Tokenizer]:
    """Train one SentencePiece model per language on the training pairs."""
    tc = cfg.tokenizer
    make = lambda texts, size: Tokenizer.train(  # noqa: E731
        texts, size, tc.type, tc.character_coverage, tc.max_training_sentences)
    return make((s for s, _ in pairs), tc.src_vocab_size), make((t for _, t in pairs), tc.tgt_vocab_size)


def encode_pairs(pairs: Pairs, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int) -> list[Example]:
    """Subword-encode pairs, dropping those longer than ``max_len`` on either side."""
    src = src_tok.encode_batch([s for s, _ in pairs])
    tgt = tgt_tok.encode_batch([t for _, t in pairs])
    return [Example(s, t) for s, t in zip(src, tgt) if 0 < len(s) <= max_len and 0 < len(t) <= max_len]


def load_pairs(cfg: Config) -> tuple[Pairs, Pairs]:
    """Cleaned training pairs (the cleaning report goes to stderr) and the validation pairs."""
    d = cfg.data
    if d.corpus:
        fill_data_paths(d)
    for key in ("train_src", "train_tgt", "valid_src", "valid_tgt"):
        if not getattr(d, key):
            raise RegardError(f"config: 'data.{key}' is not set")
    train_pairs, report = clean_pairs(iter_parallel(d.train_src, d.train_tgt, allow_empty=True),
                                      d.max_words, d.max_ratio, d.dedupe)
    print(format_report(report, d.train_src), file=sys.stderr)
    if not train_pairs:
        raise RegardError(f"{d.train_src}: no training pairs left after cleaning")
    return train_pairs, read_parallel(d.valid_src, d.valid_tgt)


def spread(items: Sequence[T], n: int) -> list[T]:
    """At most ``n`` items, evenly spaced through ``items``: a sample of a file sorted by length
    (Tatoeba's is) covers every length, where its first ``n`` lines would be the shortest."""
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


@torch.no_grad()
def evaluate(model: Seq2Seq, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer,
             valid: Pairs, valid_examples: list[Example]) -> tuple[float, float]:
    """Validation loss per token (no smoothing) and cased sacreBLEU."""
    model.eval()
    total, tokens = 0.0, 0
    for idx in batch_indices(valid_examples, cfg.train.batch_tokens, seed=0, epoch=0):
        batch = collate([valid_examples[i] for i in idx])
        total += float(model.loss(batch)) * batch.n_tokens
        tokens += batch.n_tokens
    subset = spread(valid, cfg.data.valid_max_sentences)
    hyps = Translator(model, cfg, src_tok, tgt_tok).translate([s for s, _ in subset], beam=cfg.train.eval_beam)
    bleu = sacrebleu.corpus_bleu([h.text for h in hyps], [[t for _, t in subset]]).score
    model.train()
    return total / max(tokens, 1), bleu


def save_checkpoint(out: Path, name: str, model: Seq2Seq, cfg: Config, toks: tuple[Tokenizer, Tokenizer],
                    optimizer: torch.optim.Optimizer | None = None, progress: Progress | None = None) -> None:
    """Write ``out/name`` atomically (with trainer state when given)."""
    def fill(folder: Path) -> None:
        save_model_dir(folder, model, cfg, *toks)
        if optimizer is not None and progress is not None:
            save_trainer_state(folder, optimizer, dict(progress.__dict__))
    replace_folder(out / name, fill)


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


def prepare(cfg: Config, out: Path, resume: bool, data: tuple[Pairs, Pairs] | None):
    """Data, tokenizers, model and optimizer, fresh or from ``out/last``."""
    if (out / "last").exists() and not resume:
        raise RegardError(f"{out} already holds a training run: use --resume to continue it, "
                          "or choose another train.out_dir")
    if resume and not (out / "last" / "trainer.json").is_file():
        raise RegardError(f"nothing to resume: {out / 'last'} has no training state")
    train_pairs, valid_pairs = data or load_pairs(cfg)
    if resume:
        model, saved, src_tok, tgt_tok = load_model_dir(out / "last")
        if saved.model != cfg.model or saved.tokenizer != cfg.tokenizer:
            raise RegardError("the config's model/tokenizer sections differ from the run being resumed")
        model.train()
    else:
        src_tok, tgt_tok = build_tokenizers(cfg, train_pairs)
        torch.manual_seed(cfg.train.seed)
        model = Seq2Seq(cfg.model, len(src_tok), len(tgt_tok))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, fused=True)  # one pass, not ten
    progress = Progress(**load_trainer_state(out / "last", optimizer)) if resume else Progress()
    examples = encode_pairs(train_pairs, src_tok, tgt_tok, cfg.data.max_len)
    valid_examples = encode_pairs(valid_pairs, src_tok, tgt_tok, 10**9)
    if not examples:
        raise RegardError("no training pairs left after length filtering (data.max_len)")
    return model, optimizer, progress, (src_tok, tgt_tok), examples, valid_pairs, valid_examples


def epoch_batches(examples: list[Example], cfg: Config, progress: Progress) -> Iterator[list[int]]:
    """Batches from where ``progress`` stands to the end of the last epoch, advancing it."""
    while progress.epoch < cfg.train.max_epochs:
        batches = batch_indices(examples, cfg.train.batch_tokens, cfg.train.seed, progress.epoch)
        while progress.batch_in_epoch < len(batches):
            progress.batch_in_epoch += 1
            yield batches[progress.batch_in_epoch - 1]
        progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0


def train_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, batch, lr: float, cfg: Config,
               workers: Workers | None = None) -> float:
    """One update on one batch; returns the (smoothed-label) loss. With ``workers``,
    ``batch`` is the main process's share and the workers' gradients are added to its own."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    share = 1.0 if workers is None else batch.n_tokens / workers.total_tokens
    loss = scaled_backward(model, batch, cfg, share)
    if workers is not None:
        loss += workers.collect(model)
    if cfg.train.clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
    optimizer.step()
    return loss


@dataclass
class Run:
    """Everything one training run works with."""

    cfg: Config
    out: Path
    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    progress: Progress
    toks: tuple[Tokenizer, Tokenizer]
    valid: Pairs
    valid_examples: list[Example]

    def save(self, name: str, with_state: bool = True) -> None:
        save_checkpoint(self.out, name, self.model, self.cfg, self.toks,
                        self.optimizer if with_state else None, self.progress)

    def validate(self, log: ScalarLog, bar: tqdm, **scalars: float) -> bool:
        """Evaluate, log, save ``best``/``last``; True when early stopping says stop."""
        t, p = self.cfg.train, self.progress
        v_loss, v_bleu = evaluate(self.model, self.cfg, *self.toks, self.valid, self.valid_examples)
        log.write(step=p.step, epoch=p.epoch, **scalars, valid_loss=v_loss, valid_bleu=v_bleu,
                  elapsed_s=p.elapsed)
        bar.write(f"step {p.step}: valid loss {v_loss:.3f}, BLEU {v_bleu:.2f}")
        score = v_bleu if t.keep_best_by == "bleu" else v_loss
        if is_better(score, p.best_score, t.keep_best_by):
            p.best_score, p.bad_evals = score, 0
            self.save("best", with_state=False)
        else:
            p.bad_evals += 1
        self.save("last")
        return t.patience > 0 and p.bad_evals >= t.patience


def train(cfg: Config, resume: bool = False, data: tuple[Pairs, Pairs] | None = None,
          show_progress: bool = True) -> Path:
    """Train (or resume) the model described by ``cfg``; return the run folder.

    ``data`` passes (train, valid) pairs in memory instead of reading
    ``cfg.data`` files. Raises :class:`Interrupted` after saving on Ctrl-C/SIGTERM.
    """
    t, out = cfg.train, Path(cfg.train.out_dir)
    bound_kernel_caches(t.kernel_cache)
    reuse_freed_memory()
    threads = t.threads or max(1, (os.cpu_count() or 1) // t.workers)
    torch.set_num_threads(threads)
    model, optimizer, progress, toks, examples, valid, valid_examples = prepare(cfg, out, resume, data)
    run = Run(cfg, out, model, optimizer, progress, toks, valid, valid_examples)
    if progress.step >= t.max_steps:
        return out
    workers = Workers(model, cfg, examples, t.workers, threads) if t.workers > 1 else None
    try:
        return loop(run, examples, workers, show_progress)
    finally:
        if workers is not None:
            workers.close()


def loop(run: Run, examples: list[Example], workers: Workers | None, show_progress: bool) -> Path:
    """The training loop proper, from where ``run.progress`` stands."""
    cfg, model, optimizer, progress, out = run.cfg, run.model, run.optimizer, run.progress, run.out
    t = cfg.train
    out.mkdir(parents=True, exist_ok=True)
    log = ScalarLog(out, t.log)
    timed = t.max_minutes > 0  # the time limit usually ends such runs: show the time left, not a steps ETA
    bar = tqdm(total=t.max_steps, initial=progress.step, disable=not show_progress, unit="step", mininterval=1.0,
               dynamic_ncols=True, bar_format=TIMED_BAR if timed else None)
    start, tokens, busy = time.time() - progress.elapsed, 0, 1e-9
    model.train()
    with stop_requests() as stop:
        for idx in epoch_batches(examples, cfg, progress):
            tic = time.perf_counter()
            mine = workers.dispatch(idx, examples, progress.step + 1) if workers else idx
            batch = collate([examples[i] for i in mine])
            lr = lr_at(progress.step + 1, cfg)
            loss = train_step(model, optimizer, batch, lr, cfg, workers)
            progress.step += 1
            progress.elapsed = time.time() - start
            n_tokens = workers.total_tokens if workers else batch.n_tokens
            tokens, busy = tokens + n_tokens, busy + time.perf_counter() - tic
            avg = progress.train_loss
            progress.train_loss = loss if avg is None else 0.95 * avg + 0.05 * loss
            bar.update(1)
            left = {"time_left": f"{max(0.0, t.max_minutes - progress.elapsed / 60):.1f}min"} if timed else {}
            bar.set_postfix(loss=f"{progress.train_loss:.3f}", tok_s=f"{tokens / busy:.0f}", epoch=progress.epoch,
                            **left)
            done = progress.step >= t.max_steps or 0 < t.max_minutes * 60 <= progress.elapsed
            if done or progress.step % t.eval_every == 0:
                done = run.validate(log, bar, lr=lr, train_loss=progress.train_loss, tok_s=tokens / busy) or done
                tokens, busy = 0, 1e-9
            if stop[0] and not done:
                run.save("last")
                bar.close()
                raise Interrupted(f"stopped at step {progress.step}; saved {out / 'last'} "
                                  "(continue with --resume)")
            if done:
                break
        else:  # every epoch used up
            run.validate(log, bar, lr=lr_at(progress.step, cfg), train_loss=progress.train_loss, tok_s=tokens / busy)
    bar.close()
    log.close()
    return out
