"""Nothing written is lost: the atomic writer under failures and signals, output targets checked
before any work, and the checkpoint folder swap killed at every point between its steps."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from regard import files
from regard.checkpoint import resolve_model_dir
from regard.errors import RegardError
from regard.files import (atomic_file, check_file_target, check_folder_target, recover_folder, replace_folder,
                          write_json, write_text)

ROOT = Path(__file__).parent.parent


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files or folders the writers may have left."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"precious": True})
    with pytest.raises(ValueError, match="half way"):
        with atomic_file(target) as handle:
            handle.write('{"trunc')
            raise ValueError("half way")
    assert target.read_text() == '{\n  "precious": true\n}\n' and leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(tmp_path, monkeypatch, failing):
    target = tmp_path / "r.json"
    target.write_text("old\n")
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def refuse(*args, **kwargs):
        raise full

    if failing == "fsync":
        monkeypatch.setattr(files.os, "fsync", refuse)
    elif failing == "replace":
        monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(RegardError) as err:
        with atomic_file(target) as handle:
            handle.write("new\n")
            if failing == "write":
                raise full  # what a write() into a full disk raises
    assert str(err.value) == f"cannot write {target}: No space left on device ({target} is unchanged)"
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_a_folder_as_target_is_refused_before_writing(tmp_path):
    with pytest.raises(RegardError, match="it is a folder"):
        with atomic_file(tmp_path):
            raise AssertionError("the block must not run")
    assert leftovers(tmp_path) == []


def test_new_files_follow_the_umask_existing_ones_keep_their_mode_and_symlinks_are_written_through(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
    kept = tmp_path / "kept.txt"
    kept.write_text("a")
    kept.chmod(0o604)
    write_text(kept, "b")
    assert kept.stat().st_mode & 0o777 == 0o604 and kept.read_text() == "b"
    (tmp_path / "link.txt").symlink_to("kept.txt")
    write_text(tmp_path / "link.txt", "through")
    assert (tmp_path / "link.txt").is_symlink() and kept.read_text() == "through"


def test_a_device_is_written_to_not_replaced_and_a_read_only_file_is_refused(tmp_path, monkeypatch):
    import stat
    write_text(os.devnull, "into the void")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    check_file_target(os.devnull, "-o")
    kept = tmp_path / "kept.txt"
    kept.write_text("mine")
    real = os.access
    monkeypatch.setattr(files.os, "access", lambda path, mode: False if Path(path) == kept else real(path, mode))
    with pytest.raises(RegardError, match=r"^-o .*kept.txt: Permission denied \(the file is read-only\)$"):
        check_file_target(kept, "-o")
    with pytest.raises(RegardError, match=r"Permission denied \(the file is read-only\)$"):
        write_text(kept, "theirs")
    assert kept.read_text() == "mine" and leftovers(tmp_path) == []


def test_sigterm_to_a_command_writing_its_output_leaves_the_old_file_and_no_temporary(tmp_path, trained_run):
    """A real `regard translate -o`: its output's temporary file exists while it waits for input;
    SIGTERM then ends it (exit 143) with the old file intact and the temporary removed."""
    out = tmp_path / "out.fr"
    out.write_text("precious\n")
    proc = subprocess.Popen([sys.executable, "-m", "regard", "translate", "--model", str(trained_run), "-o", str(out)],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("the cat\n")
        proc.stdin.flush()
        deadline = time.time() + 60
        while not leftovers(tmp_path) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert leftovers(tmp_path), "no temporary output file appeared"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err.strip().endswith("regard: terminated"), err
    assert out.read_text() == "precious\n" and leftovers(tmp_path) == []


def test_output_targets_are_checked_where_they_will_be_written(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegardError, match=r"^-o .*: is a folder, not a file$"):
        check_file_target(tmp_path, "-o")
    with pytest.raises(RegardError, match=r"^--json-out .*: folder .*missing does not exist$"):
        check_file_target(tmp_path / "missing" / "r.json", "--json-out")
    with pytest.raises(RegardError, match=r"^train.out_dir .*: .*file is a file, not a folder$"):
        check_folder_target(tmp_path / "file" / "run", "train.out_dir")
    check_folder_target(tmp_path / "new" / "run", "train.out_dir")  # may be created
    assert leftovers(tmp_path) == [] and not (tmp_path / "new").exists()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)  # as root, permissions cannot make one
    with pytest.raises(RegardError, match=r"^-o .*: cannot write in .*: Read-only file system$"):
        check_file_target(tmp_path / "out.fr", "-o")
    monkeypatch.undo()
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=0, free=2**20))
    with pytest.raises(RegardError, match=r"1 MiB free on its disk, about 100 MiB needed"):
        check_folder_target(tmp_path / "run", "train.out_dir", need_bytes=100 * 2**20)


class Killed(BaseException):
    """The process died here: no handler runs, nothing more reaches the disk."""


class Mortal:
    """Every change ``replace_folder`` makes to the disk, counted; at change number ``at`` the
    process "dies": that change and every later one (its cleanup included) raise :class:`Killed`."""

    def __init__(self, monkeypatch, at: int | None):
        self.at, self.count, self.dead = at, 0, False
        real_rename, real_mkdir, real_unlink, real_rmdir = os.rename, os.mkdir, os.unlink, os.rmdir
        for name, real in (("rename", real_rename), ("replace", os.replace), ("mkdir", real_mkdir)):
            monkeypatch.setattr(os, name, self.guard(real))
        unlink, rmdir = self.guard(real_unlink), self.guard(real_rmdir)

        def rmtree(path, ignore_errors=False, **kwargs):  # file by file, so it can die half way
            path = Path(path)
            if not path.exists():
                return
            for child in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
                (rmdir if child.is_dir() and not child.is_symlink() else unlink)(child)
            rmdir(path)

        monkeypatch.setattr(shutil, "rmtree", rmtree)
        self.write = self.guard(lambda path, text: Path(path).write_text(text))

    def guard(self, real):
        def change(*args, **kwargs):
            if self.dead or self.count == self.at:
                self.dead = True
                raise Killed()
            self.count += 1
            return real(*args, **kwargs)
        return change


CHECKPOINT = ("config.json", "model.safetensors", "src.spm", "tgt.spm", "trainer.json")


def fill_with(version: str, write=lambda path, text: Path(path).write_text(text)):
    def fill(folder: Path) -> None:
        for name in CHECKPOINT:
            write(folder / name, version)
    return fill


def version_of(folder: Path) -> str:
    """The one version all of a checkpoint's files hold; fails on a partial or mixed folder."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(CHECKPOINT), f"incomplete {folder}"
    versions = {(folder / name).read_text() for name in CHECKPOINT}
    assert len(versions) == 1, f"mixed versions in {folder}: {versions}"
    return versions.pop()


def test_the_checkpoint_swap_killed_at_every_point_leaves_a_complete_copy_that_resume_finds(tmp_path,
                                                                                            monkeypatch):
    """For each change replace_folder makes (mkdir, each file, each rename, each deletion): die
    there. A model is then always found complete (the old or the new one, never a mix), --resume's
    recovery puts last/ back, and the next save works and leaves no .tmp or .old folder."""
    with monkeypatch.context() as m:  # a dry run counts the changes of a swap over an existing folder
        replace_folder(tmp_path / "probe", fill_with("v1"))
        counter = Mortal(m, at=None)
        replace_folder(tmp_path / "probe", fill_with("v2", counter.write))
        steps = counter.count
    assert steps >= len(CHECKPOINT) + 4
    for at in range(steps + 1):
        run = tmp_path / f"run{at}"
        replace_folder(run / "last", fill_with("v1"))
        with monkeypatch.context() as m:
            mortal = Mortal(m, at)
            if at < steps:
                with pytest.raises(Killed):
                    replace_folder(run / "last", fill_with("v2", mortal.write))
            else:
                replace_folder(run / "last", fill_with("v2", mortal.write))
        assert version_of(resolve_model_dir(run / "last")) in ("v1", "v2"), at  # what translate would load
        recover_folder(run / "last")  # what training does before --resume looks for last/
        assert version_of(run / "last") in ("v1", "v2"), at
        replace_folder(run / "last", fill_with("v3"))  # the resumed run's next save
        assert version_of(run / "last") == "v3" and leftovers(run) == [], at


def test_a_failure_inside_a_checkpoint_keeps_the_previous_one_and_no_temporary_folder(tmp_path):
    replace_folder(tmp_path / "last", fill_with("v1"))

    def full(folder: Path) -> None:
        (folder / "config.json").write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(RegardError, match=r"^cannot write .*last: No space left on device \(.*last is unchanged\)$"):
        replace_folder(tmp_path / "last", full)
    assert version_of(tmp_path / "last") == "v1" and leftovers(tmp_path) == []


@pytest.fixture
def no_work(monkeypatch):
    """Every expensive step of the commands fails the test if it is reached."""
    import regard.evaluation
    import regard.pool
    import regard.training.trainer
    import regard.translator

    def work(*args, **kwargs):
        raise AssertionError("the expensive work started before the output was checked")

    monkeypatch.setattr(regard.pool, "open_translator", work)
    monkeypatch.setattr(regard.translator.Translator, "load", work)
    monkeypatch.setattr(regard.evaluation, "read_test_set", work)
    monkeypatch.setattr(regard.evaluation, "load_results", work)
    monkeypatch.setattr(regard.training.trainer, "validation_pairs", work)
    monkeypatch.setattr(regard.training.trainer, "ensure_prepared", work)
    monkeypatch.setattr(regard.training.trainer, "open_prepared", work)


EVALUATE = ["evaluate", "--model", "m", "--src", "{tmp}/a.en", "--ref", "{tmp}/a.fr"]


@pytest.mark.parametrize("argv, message", [
    (["translate", "--model", "m", "-o", "{tmp}"], "-o {tmp}: is a folder, not a file"),
    (["translate", "--model", "m", "-o", "{tmp}/missing/out.fr"], "folder {tmp}/missing does not exist"),
    ([*EVALUATE, "--json-out", "{tmp}"], "--json-out {tmp}: is a folder, not a file"),
    ([*EVALUATE, "--plot", "{tmp}/bleu.xyz"], "--plot {tmp}/bleu.xyz: unknown image type '.xyz'; use one of .avif,"),
    ([*EVALUATE, "--plot", "{tmp}/bleu"], "--plot {tmp}/bleu: no extension to tell the image type"),
    ([*EVALUATE, "--plot", "{tmp}/missing/bleu.png"], "folder {tmp}/missing does not exist"),
    (["plot", "--model", "m", "the cat", "-o", "{tmp}/a.docx"], "unknown image type '.docx'"),
    (["plot-bleu", "{tmp}/r.json", "-o", "{tmp}/missing/x.svg"], "folder {tmp}/missing does not exist"),
    (["demo", "--out", "{tmp}/file/demo"], "--out {tmp}/file/demo: {tmp}/file is a file, not a folder"),
])
def test_output_targets_are_one_line_errors_before_any_work(tmp_path, capsys, no_work, argv, message):
    from regard.cli import main
    (tmp_path / "file").write_text("x")
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("regard: error: ") and len(err.splitlines()) == 1, err
    assert message.format(tmp=tmp_path) in err
    assert leftovers(tmp_path) == []


def test_a_training_output_folder_that_cannot_hold_the_checkpoints_fails_before_any_data_is_read(
        tmp_path, no_work, monkeypatch):
    from regard.training.trainer import train
    from tests.conftest import tiny_config
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegardError, match=r"^train.out_dir .*file/run: .*file is a file, not a folder$"):
        train(tiny_config(tmp_path / "file" / "run"), show_progress=False)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=0, free=10**4))
    with pytest.raises(RegardError, match=r"^train.out_dir .*run: 0 MiB free on its disk, about \d+ MiB needed$"):
        train(tiny_config(tmp_path / "run"), show_progress=False)
    assert not (tmp_path / "run").exists()
