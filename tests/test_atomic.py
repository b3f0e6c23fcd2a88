"""Atomic files and directories, the switch a killed writer leaves half done, the writer lock."""

import os
import subprocess
import sys
import textwrap

import pytest

from jsurgery.atomic import (
    LockedError,
    current_dir,
    lock_dir,
    read_whole,
    recover_dir,
    replace_dir,
    write_file,
)

DEAD_PID = 4_999_999  # above Linux's largest process ID (4194304): never a running process


def _fill(text):
    def build(stage):
        (stage / "a.txt").write_text(text)
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text(text)

    return build


def _content(directory):
    return (directory / "a.txt").read_text(), (directory / "sub" / "b.txt").read_text()


def _siblings(target):
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def test_replace_dir_switches_the_whole_directory_and_leaves_nothing_beside(tmp_path):
    target = tmp_path / "run"
    replace_dir(target, _fill("old"))
    (target / "stale.txt").write_text("from the old version")
    replace_dir(target, _fill("new"))
    assert _content(target) == ("new", "new")
    assert not (target / "stale.txt").exists()
    assert _siblings(target) == []


def test_a_failing_build_leaves_the_old_directory_as_it_was(tmp_path):
    target = tmp_path / "run"
    replace_dir(target, _fill("old"))

    def broken(stage):
        (stage / "a.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        replace_dir(target, broken)
    assert _content(target) == ("old", "old")
    assert _siblings(target) == []


def test_between_the_two_renames_readers_find_the_new_version_and_recovery_finishes(tmp_path):
    # What a writer killed between renaming the old version aside and the new one in leaves.
    target = tmp_path / "run"
    for kind, text in (("old", "old"), ("new", "new")):
        replace_dir(tmp_path / f".run.{kind}-{DEAD_PID}-x", _fill(text))
    assert not target.exists()
    assert _content(current_dir(target)) == ("new", "new")
    recover_dir(target)
    assert _content(target) == ("new", "new")
    assert _siblings(target) == []


def test_recovery_keeps_a_live_writers_staging_directory_and_removes_a_dead_ones(tmp_path):
    target = tmp_path / "run"
    replace_dir(target, _fill("old"))
    live = tmp_path / f".run.building-{os.getpid()}-x"
    dead = tmp_path / f".run.building-{DEAD_PID}-x"
    live.mkdir()
    dead.mkdir()
    recover_dir(target)
    assert live.exists() and not dead.exists()
    assert _content(target) == ("old", "old")


def test_write_file_keeps_the_old_content_when_writing_fails(tmp_path):
    path = tmp_path / "results.json"
    write_file(path, lambda file: file.write("old"))

    def broken(file):
        file.write("half")
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space left"):
        write_file(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_second_writer_is_refused_with_the_holders_process_id(tmp_path):
    target = tmp_path / "run"
    holder = textwrap.dedent(f"""
        import sys, time
        from jsurgery.atomic import lock_dir
        with lock_dir({str(target)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        message = f"being written by another process \\(pid {proc.pid}"
        with pytest.raises(LockedError, match=message):
            with lock_dir(target):
                pass
    finally:
        proc.kill()
        proc.wait()
    with lock_dir(target):  # the lock dies with its holder
        pass


def test_files_and_directories_get_the_mode_the_umask_gives(tmp_path):
    previous = os.umask(0o027)
    try:
        write_file(tmp_path / "a.json", lambda file: file.write("{}"))
        replace_dir(tmp_path / "run", _fill("x"))
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o750


def test_read_whole_reads_again_when_the_directory_is_switched_during_a_read(tmp_path):
    target = tmp_path / "run"
    replace_dir(target, _fill("old"))
    reads = []

    def read(directory):
        first = (directory / "a.txt").read_text()
        if not reads:  # a writer switches the directory in the middle of the first read
            replace_dir(target, _fill("new"))
        reads.append(directory)
        return first, (directory / "sub" / "b.txt").read_text()

    assert read_whole(target, read) == ("new", "new")  # the first read mixed "old" and "new"
    assert len(reads) == 2


def test_read_whole_raises_a_versions_own_error_at_once(tmp_path):
    target = tmp_path / "run"
    replace_dir(target, _fill("old"))
    calls = []

    def read(directory):
        calls.append(directory)
        return (directory / "missing.txt").read_text()

    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_whole(target, read)
    assert len(calls) == 1
