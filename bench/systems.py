"""Training and translating with each system, each phase in its own measured process.

A :class:`System` knows how to start its toolkit's training and translation and how
to read the numbers back. Translations always come back as detokenised text (the
peers print SentencePiece pieces, decoded with the same model Regard uses).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import measure
from bench.configs import joey_config, onmt_train_config, onmt_translate_args, write_yaml
from bench.data import Prepared, decode_pieces
from bench.install import venv_python
from regard.data.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parent.parent
REGARD_ENV = {"PYTHONPATH": str(REPO)}
ONMT_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # its checkpoints hold pickled options


class RunFailed(RuntimeError):
    """A toolkit's process failed; the message holds the end of its log."""


@dataclass
class Context:
    """What every system needs: prepared data, the peers' venvs, batch sizes, sentence limit, and
    the architecture of the shared model (``rnn`` or ``transformer``)."""

    prep: Prepared
    cache: Path
    batch_sizes: dict[str, int]
    limit: int | None = None
    arch: str = "rnn"
    _tgt_tok: Tokenizer | None = field(default=None, repr=False)

    @property
    def tgt_tok(self) -> Tokenizer:
        if self._tgt_tok is None:
            self._tgt_tok = Tokenizer.load(self.prep.spm("fr"))
        return self._tgt_tok

    def limited(self, path: Path, work: Path) -> Path:
        """``path`` itself, or its first ``limit`` lines in ``work``."""
        if self.limit is None:
            return path
        out = work / f"{path.name}.first{self.limit}"
        with open(path, encoding="utf-8") as f:
            out.write_text("".join(line for _, line in zip(range(self.limit), f)), encoding="utf-8")
        return out


@dataclass
class Trained:
    """A finished training run."""

    model: Path
    run: measure.Finished
    points: list[measure.Point]
    extra: dict = field(default_factory=dict)


@dataclass
class Translated:
    """A finished translation run: time excluding model loading, output, memory."""

    seconds: float
    sentences: int
    out_tokens: int
    texts: list[str]
    run: measure.Finished
    extra: dict = field(default_factory=dict)


def _check(run: measure.Finished, what: str, allow_interrupt: bool = False) -> None:
    if run.returncode != 0 and not (allow_interrupt and run.interrupted):
        raise RunFailed(f"{what} failed (exit {run.returncode}); end of {run.log}:\n{run.tail()}")


def _last_json(path: Path) -> dict:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    if not lines:
        raise RunFailed(f"{path}: no result line")
    return json.loads(lines[-1])


class System:
    name = ""

    def train(self, ctx: Context, work: Path, steps: int, deadline_s: float | None = None) -> Trained:
        raise NotImplementedError

    def translate(self, ctx: Context, model: Path, beam: int, work: Path) -> Translated:
        raise NotImplementedError


class Regard(System):
    """Regard through ``bench.regard_run`` (its own training loop and Translator)."""

    def __init__(self, bf16: bool = False):
        self.bf16 = bf16
        self.name = "regard-bf16" if bf16 else "regard"

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bench.regard_run", *args]

    def train(self, ctx: Context, work: Path, steps: int, deadline_s: float | None = None) -> Trained:
        out = work / "stdout.json"
        run = measure.run(self._cmd("train", "--prep", str(ctx.prep.folder), "--out", str(work / "model"),
                                    "--steps", str(steps), "--precision", "bf16" if self.bf16 else "fp32",
                                    "--arch", ctx.arch),
                          work / "train.log", REGARD_ENV, stdout=out, deadline_s=deadline_s, cwd=REPO)
        _check(run, f"{self.name} training", allow_interrupt=True)
        result = _last_json(out)
        points = [(s, t, float(n)) for s, t, n in result["points"]]
        worker_rss = result["worker_peak_rss_mib"]  # the worker process is not the measured child: add it
        run = dataclasses.replace(run, peak_rss_mib=run.peak_rss_mib + worker_rss)
        return Trained(Path(result["model"]), run, points, {"same_subwords": result["same_subwords"],
                                                            "steps": result["steps"],
                                                            "worker_peak_rss_mib": worker_rss})

    def translate(self, ctx: Context, model: Path, beam: int, work: Path, precision: str | None = None,
                  stopping: str | None = None) -> Translated:
        """With ``precision`` (fp32, bf16, int8) instead of this system's own (fp32 or bf16), and
        beam search's ``stopping`` rule instead of the benchmark's."""
        stem = f"beam{beam}" + (f"-{precision}" if precision else "") + (f"-{stopping}" if stopping else "")
        out, hyps = work / f"{stem}.json", work / f"{stem}.hyp"
        cmd = self._cmd("translate", "--model", str(model), "--src", str(ctx.prep.original("test", "en")),
                        "--out", str(hyps), "--beam", str(beam),
                        "--precision", precision or ("bf16" if self.bf16 else "fp32"),
                        *(["--stopping", stopping] if stopping else []))
        if ctx.limit is not None:
            cmd += ["--limit", str(ctx.limit)]
        run = measure.run(cmd, work / f"{stem}.log", REGARD_ENV, stdout=out, cwd=REPO)
        _check(run, f"{self.name} translation")
        result = _last_json(out)
        if result["workers"] > 1:  # wait4 gave the largest of the processes: count each instead
            run = dataclasses.replace(run, peak_rss_mib=result["own_peak_rss_mib"] + result["workers_peak_rss_mib"])
        texts = hyps.read_text(encoding="utf-8").splitlines()
        return Translated(result["seconds"], result["sentences"], result["out_tokens"], texts, run,
                          {"inference_dtype": result["inference_dtype"], "workers": result["workers"],
                           "workers_peak_rss_mib": result["workers_peak_rss_mib"]})


class Joey(System):
    """Joey NMT 2.3: ``python -m joeynmt train|translate CONFIG``."""

    name = "joeynmt"

    def _python(self, ctx: Context) -> str:
        return str(venv_python(ctx.cache, "joeynmt"))

    def _dev(self, ctx: Context, work: Path, sentences: int = 20) -> Path:
        for lang in ("en", "fr"):
            with open(ctx.prep.pieces("val", lang), encoding="utf-8") as f:
                (work / f"dev.{lang}").write_text("".join(line for _, line in zip(range(sentences), f)))
        return work / "dev"

    def _config(self, ctx: Context, work: Path, steps: int, beam: int = 1, load: Path | None = None) -> dict:
        model_dir = load.parent if load else work / "model"
        config = joey_config(ctx.prep, model_dir, steps, self._dev(ctx, work), beam, load)
        config["training"]["batch_size"] = ctx.batch_sizes[self.name]
        return config

    def train(self, ctx: Context, work: Path, steps: int, deadline_s: float | None = None) -> Trained:
        work.mkdir(parents=True, exist_ok=True)
        config = write_yaml(self._config(ctx, work, steps), work / "train.yaml")
        run = measure.run([self._python(ctx), "-m", "joeynmt", "train", str(config), "--skip-test"],
                          work / "train.log", deadline_s=deadline_s, cwd=work)
        _check(run, "joeynmt training", allow_interrupt=True)
        model = work / "model" / "latest.ckpt"
        if not model.exists():
            raise RunFailed(f"joeynmt saved no checkpoint; end of {run.log}:\n{run.tail()}")
        return Trained(model, run, measure.joey_points(run.log), {"steps": int(model.resolve().stem)})

    def translate(self, ctx: Context, model: Path, beam: int, work: Path) -> Translated:
        work.mkdir(parents=True, exist_ok=True)
        config = write_yaml(self._config(ctx, work, 1, beam, model), work / f"beam{beam}.yaml")
        src = ctx.limited(ctx.prep.pieces("test", "en"), work)
        pieces = work / f"beam{beam}.pieces"
        # translate -o FILE crashes in Joey 2.3 (AttributeError: no n_best): read stdout instead
        run = measure.run([self._python(ctx), "-m", "joeynmt", "translate", str(config)],
                          work / f"beam{beam}.log", stdin=src, stdout=pieces, cwd=work)
        _check(run, "joeynmt translation")
        return _from_pieces(ctx, pieces, measure.joey_translate_seconds(run.log), run)


class OpenNMT(System):
    """OpenNMT-py 3.5: ``onmt.bin.train -config`` and ``onmt.bin.translate``."""

    name = "opennmt-py"

    def _python(self, ctx: Context) -> str:
        return str(venv_python(ctx.cache, "opennmt-py"))

    def train(self, ctx: Context, work: Path, steps: int, deadline_s: float | None = None) -> Trained:
        work.mkdir(parents=True, exist_ok=True)
        # it cannot save on an interrupt: with a deadline, keep a recent checkpoint instead
        config = onmt_train_config(ctx.prep, work, steps, save_every=50 if deadline_s else None, arch=ctx.arch)
        config["batch_size"] = ctx.batch_sizes[self.name]
        if deadline_s:
            config["keep_checkpoint"] = 2
        path = write_yaml(config, work / "train.yaml")
        run = measure.run([self._python(ctx), "-m", "onmt.bin.train", "-config", str(path)],
                          work / "train.log", ONMT_ENV, deadline_s=deadline_s, cwd=work)
        _check(run, "opennmt-py training", allow_interrupt=True)
        saved = sorted(work.glob("model_step_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        if not saved:
            raise RunFailed(f"opennmt-py saved no checkpoint; end of {run.log}:\n{run.tail()}")
        step = int(saved[-1].stem.rsplit("_", 1)[1])
        return Trained(saved[-1], run, measure.onmt_points(run.log), {"steps": step, "checkpoint": saved[-1].name})

    def translate(self, ctx: Context, model: Path, beam: int, work: Path) -> Translated:
        work.mkdir(parents=True, exist_ok=True)
        src = ctx.limited(ctx.prep.pieces("test", "en"), work)
        pieces = work / f"beam{beam}.pieces"
        run = measure.run([self._python(ctx), "-m", "onmt.bin.translate",
                           *onmt_translate_args(model, src, pieces, beam)],
                          work / f"beam{beam}.log", ONMT_ENV, cwd=work)
        _check(run, "opennmt-py translation")
        sentences = sum(1 for _ in open(src, encoding="utf-8"))
        return _from_pieces(ctx, pieces, measure.onmt_translate_seconds(run.log, sentences), run)


def _from_pieces(ctx: Context, pieces: Path, seconds: float, run: measure.Finished) -> Translated:
    lines = pieces.read_text(encoding="utf-8").splitlines()
    texts = [decode_pieces(ctx.tgt_tok, line) for line in lines]
    out_tokens = sum(len(line.split()) + 1 for line in lines)
    return Translated(seconds, len(lines), out_tokens, texts, run)


SYSTEMS: dict[str, System] = {s.name: s for s in (Regard(), Joey(), OpenNMT(), Regard(bf16=True))}
