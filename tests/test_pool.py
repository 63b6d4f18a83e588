"""Translating with worker processes: the same translations as one process, and clear errors."""

import os
import signal

import pytest
import torch

from regard.errors import RegardError
from regard.pool import TranslatorPool, open_translator
from regard.translator import Translator

SENTENCES = ["the black cat ate the mouse", "", "a small dog sees the old man", "the man runs",
             "the old woman sees a black cat in the garden"] * 7


@pytest.fixture(scope="module")
def pool(trained_run):
    with TranslatorPool.load(trained_run, workers=2) as pool:
        yield pool


@pytest.mark.parametrize("beam, nbest", [(1, 1), (3, 2)])
def test_the_pool_gives_what_one_process_gives_in_input_order(pool, trained_run, beam, nbest):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: fp32 sums may round differently with other thread counts
    try:
        one = Translator.load(trained_run).translate_nbest(SENTENCES, beam=beam, nbest=nbest, batch_size=4)
    finally:
        torch.set_num_threads(threads)
    many = pool.translate_nbest(SENTENCES, beam=beam, nbest=nbest, batch_size=4)  # 7 batches for 2 workers
    assert [[(h.source, h.text, h.score, h.attention) for h in hyps] for hyps in many] == \
           [[(h.source, h.text, h.score, h.attention) for h in hyps] for hyps in one]
    assert many[1][0].text == "" and len(many[0]) == nbest


def test_a_worker_error_is_raised_and_the_pool_still_works(pool):
    with pytest.raises(ValueError, match="nbest"):
        pool.translate_nbest(SENTENCES, beam=2, nbest=3, batch_size=4)
    again = pool.translate(SENTENCES[:5], beam=1, batch_size=1)  # no answer left over from the failed call
    assert [t.source for t in again] == SENTENCES[:5]


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path):
    with pytest.raises(RegardError, match="not a Regard model folder"):
        TranslatorPool.load(tmp_path, workers=2)
    with pytest.raises(ValueError, match="workers"):
        TranslatorPool.load(tmp_path, workers=0)
    with pytest.raises(ValueError, match="workers"):
        open_translator(tmp_path, workers=0)  # not quietly one process


def test_a_dead_worker_is_a_clear_error_not_a_hang(trained_run):
    pool = TranslatorPool.load(trained_run, workers=2)
    os.kill(pool.processes[0].pid, signal.SIGKILL)
    pool.processes[0].join()
    with pytest.raises(RegardError, match="worker died"):
        pool.translate(SENTENCES * 20, beam=3, batch_size=2)
    assert pool.processes == []  # closed, and says so
    with pytest.raises(RegardError, match="pool is closed"):
        pool.translate(SENTENCES)
