"""Data-parallel training on one machine: each batch split between N processes.

One RNN training step is hundreds of small matrix products, one per time step;
splitting each of them across threads gains little on a 2-core CPU, because the
threads wait for each other hundreds of times a step. Splitting the *batch*
instead lets each core run its own sequence of products undisturbed:

* the model's parameters live in shared memory, so the worker processes read
  the very tensors the main process updates (no copies, nothing to send);
* each step the main process sends every worker the indices of its share of
  the batch; all compute the gradient of their share, weighted by its share of
  the batch's target tokens, so the sum is the gradient of the whole batch;
* the main process adds the workers' gradients (from shared buffers) to its own,
  then clips and takes the optimizer step as usual.

A worker seeds its dropout from (seed, step, rank), so runs are deterministic and
``--resume`` needs no worker state.
"""

from __future__ import annotations

import signal
import traceback

import torch
import torch.multiprocessing as mp

from regard.config import Config
from regard.data.batching import Batch, Example, collate
from regard.errors import RegardError
from regard.model.seq2seq import Seq2Seq


def scaled_backward(model: Seq2Seq, batch: Batch, cfg: Config, share: float) -> float:
    """Backward of ``share`` × the batch's mean loss; returns that weighted loss."""
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.bf16)  # noqa: E731
    return model.backward_loss(batch, cfg.train.label_smoothing, share, autocast=autocast)


def grad_views(model: Seq2Seq, buffer: torch.Tensor) -> list[torch.Tensor]:
    """``buffer`` (one value per parameter entry) cut into views shaped like each parameter."""
    views, offset = [], 0
    for p in model.parameters():
        views.append(buffer[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    return views


class Workers:
    """``n - 1`` helper processes; the main process is the n-th worker (rank 0)."""

    def __init__(self, model: Seq2Seq, cfg: Config, examples: list[Example], n: int, threads: int = 1):
        model.share_memory()
        size = sum(p.numel() for p in model.parameters())
        ctx = mp.get_context("spawn")
        self.n, self.total_tokens = n, 0
        self.buffers = [torch.zeros(size).share_memory_() for _ in range(n - 1)]
        self.pipes, self.processes = [], []
        for rank, buffer in enumerate(self.buffers, start=1):
            mine, theirs = ctx.Pipe()
            process = ctx.Process(target=work, args=(rank, model, cfg, examples, buffer, theirs, threads),
                                  daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)

    def dispatch(self, idx: list[int], examples: list[Example], step: int) -> list[int]:
        """Send the workers their shares of batch ``idx``; return the main process's share."""
        shares = [idx[r::self.n] for r in range(self.n)]
        self.total_tokens = sum(len(examples[i].tgt) + 1 for i in idx)
        for pipe, share in zip(self.pipes, shares[1:]):
            pipe.send((share, step, self.total_tokens))
        return shares[0]

    def collect(self, model: Seq2Seq) -> float:
        """Wait for the workers; add their gradients to ``model``'s; return their weighted loss."""
        loss = 0.0
        for pipe, buffer in zip(self.pipes, self.buffers):
            loss += receive(pipe)
            for p, grad in zip(model.parameters(), grad_views(model, buffer)):
                p.grad = grad.clone() if p.grad is None else p.grad.add_(grad)
        return loss

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def receive(pipe) -> float:
    """A worker's reply; a worker's failure becomes a :class:`RegardError` here."""
    try:
        reply = pipe.recv()
    except EOFError:
        raise RegardError("a training worker process died (out of memory?)") from None
    if isinstance(reply, str):
        raise RegardError(f"a training worker failed:\n{reply}")
    return reply


def next_message(pipe):
    """The main process's next message; None when it says stop or has gone away."""
    try:
        return pipe.recv()
    except EOFError:
        return None


def work(rank: int, model: Seq2Seq, cfg: Config, examples: list[Example], buffer: torch.Tensor, pipe,
         threads: int) -> None:
    """A worker's loop: gradient of each share it is sent, into ``buffer``, until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process to handle
    torch.set_num_threads(threads)
    model.train()
    views = grad_views(model, buffer)
    while (message := next_message(pipe)) is not None:
        share, step, total_tokens = message
        try:
            torch.manual_seed(cfg.train.seed * 1_000_003 + step * 64 + rank)
            loss = 0.0
            if share:
                batch = collate([examples[i] for i in share])
                loss = scaled_backward(model, batch, cfg, batch.n_tokens / total_tokens)
            for p, view in zip(model.parameters(), views):
                view.copy_(p.grad) if p.grad is not None else view.zero_()
            model.zero_grad(set_to_none=True)
            pipe.send(loss)
        except Exception:  # report, then keep serving: the main process decides to stop
            pipe.send(traceback.format_exc())
