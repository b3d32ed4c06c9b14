from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from kscore.errors import InputError, OutputError
from kscore.io import (
    check_output,
    model_names,
    read_kscore_metadata,
    read_table,
    remove_stale_temporaries,
    resolve_model_files,
    temporary_path,
    write_atomic,
    write_failure,
    write_table_atomic,
)


@pytest.mark.parametrize(
    ("files", "names"),
    [
        (["results_a.csv", "results_b.csv"], ["a", "b"]),
        (["run-1_a.parquet", "run-1_b.parquet"], ["a", "b"]),
        (["eval.v2.bert.csv", "eval.v2.gpt.csv"], ["bert", "gpt"]),
        (["model_a_v1.csv", "model_b_v1.csv"], ["a_v1", "b_v1"]),
        (["resa.csv", "resb.csv"], ["resa", "resb"]),  # shared prefix without a separator: kept
        (["results_a.csv"], ["results_a"]),  # a single file keeps its whole stem
        (["results_.csv", "results_a.csv"], ["results_", "results_a"]),  # nothing would be left
    ],
)
def test_model_names(files, names):
    assert model_names([Path(f) for f in files]) == names


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_text("id\n1\n")


def test_globs_quoted_or_not_and_explicit_names(tmp_path: Path):
    touch(tmp_path, "results_a.csv", "results_b.csv", "other.csv")
    files = resolve_model_files([str(tmp_path / "results_*.csv"), f"mine={tmp_path / 'other.csv'}"])
    assert files == {
        "mine": tmp_path / "other.csv",
        "a": tmp_path / "results_a.csv",
        "b": tmp_path / "results_b.csv",
    }


def test_errors_in_file_arguments(tmp_path: Path):
    touch(tmp_path, "x_a.csv", "y_a.csv")
    with pytest.raises(InputError, match="no file matches"):
        resolve_model_files([str(tmp_path / "nothing_*.csv")])
    with pytest.raises(InputError, match="both named model 'a'"):
        resolve_model_files([f"a={tmp_path / 'x_a.csv'}", f"a={tmp_path / 'y_a.csv'}"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("", "file is empty"),
        ("id,f1\n", "file has no data rows"),
        ("id,f1\n1,0.5\n2,0.3,9\n", "cannot read CSV file"),
    ],
)
def test_read_table_errors(tmp_path: Path, content, message):
    path = tmp_path / "r.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=f"r.csv: {message}"):
        read_table(path)


def test_unsupported_extension(tmp_path: Path):
    with pytest.raises(InputError, match=r"unsupported file type '\.xlsx'"):
        read_table(tmp_path / "r.xlsx")


def test_csv_text_in_a_numeric_column_is_kept_for_the_message(tmp_path: Path):
    path = tmp_path / "r.csv"
    path.write_text("id,f1\n" + "".join(f"{i},0.{i}\n" for i in range(200)) + "200,oops\n")
    frame = read_table(path, ["id", "f1"], numeric=["f1"])
    assert frame.schema["f1"] == pl.String


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "out.parquet"
    out.write_text("old")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(RuntimeError):
        write_table_atomic(pl.DataFrame({"a": [1]}), out, {})
    assert out.read_text() == "old"
    assert list(tmp_path.iterdir()) == [out]


def test_metadata_round_trip(tmp_path: Path):
    out = tmp_path / "out.parquet"
    write_table_atomic(pl.DataFrame({"a": [1]}), out, {"models": ["a", "b"]})
    assert read_kscore_metadata(out) == {"models": ["a", "b"]}


def test_output_must_not_overwrite_an_input(tmp_path: Path):
    data = tmp_path / "r.parquet"
    with pytest.raises(InputError, match="would overwrite an input"):
        check_output(data, [data])
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "missing" / "o.parquet", [data])
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path, [data])


def test_a_failed_write_leaves_no_temporary_file_and_keeps_the_old_output(tmp_path: Path):
    out = tmp_path / "o.parquet"
    out.write_text("previous")

    def fail(temp: str) -> None:
        Path(temp).write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"o\.parquet: cannot write: the disk is full"):
        write_atomic(out, fail)
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet"]


def test_polars_io_errors_name_the_reason():
    error = write_failure(Path("x.parquet"), pl.exceptions.ComputeError("underlying IO error: (os error 30)"))
    assert str(error) == "x.parquet: cannot write: read-only file system; choose another -o"


def test_stale_temporaries_of_dead_runs_are_removed_and_only_those(tmp_path: Path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    mine = temporary_path(tmp_path / "o.parquet")
    host = mine.name.split(".kscore-")[1].rsplit("-", 3)[0]
    stale = tmp_path / f".o.parquet.kscore-{host}-{dead_pid}-123-abcd.tmp"
    stale_folder = tmp_path / f".d.kscore-{host}-{dead_pid}-123-abcd.tmp"
    other_host = tmp_path / f".o.parquet.kscore-elsewhere-{dead_pid}-123-abcd.tmp"
    user_file = tmp_path / "notes.tmp"
    for path in (mine, stale, other_host, user_file):
        path.write_text("x")
    stale_folder.mkdir()
    (stale_folder / "part.parquet").write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale, stale_folder])
    assert mine.exists() and other_host.exists() and user_file.exists()


def test_a_temporary_folder_a_late_writer_recreates_is_removed_at_exit(tmp_path: Path):
    """A failed query's sink may still be closing a file when its folder is discarded (a full disk)
    and create the folder again: the process removes its own such folders as it exits, and no
    other run's (this test's own live one) or anything else."""
    import subprocess
    import sys

    theirs = temporary_path(tmp_path / "o.parquet")  # a live run's: this process's
    theirs.mkdir()
    user_file = tmp_path / "notes.tmp"
    user_file.write_text("x")
    late = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kscore.io import temporary_folder\n"
        "with temporary_folder(Path(sys.argv[1]) / 'o.parquet') as folder:\n"
        "    pass\n"
        "assert not folder.exists()\n"
        "(folder / 'rows-m0' / 'k=0').mkdir(parents=True)\n"  # what the late writer does
        "(folder / 'rows-m0' / 'k=0' / '0.ipc').write_bytes(b'x')\n"
        "print(folder)\n"
    )
    done = subprocess.run([sys.executable, "-c", late, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not Path(done.stdout.strip()).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([theirs.name, user_file.name])


def test_outputs_get_normal_permissions(tmp_path: Path):
    import os

    out = tmp_path / "o.parquet"
    write_table_atomic(pl.DataFrame({"a": [1]}), out, {})
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("name", ["o.csv", "o.ndjson"])
def test_a_sidecar_name_holding_a_file_kscore_did_not_write_is_refused(tmp_path: Path, name: str):
    """Neither the CLI's up-front check nor the library's writer replaces a user's file at the
    sidecar's name; kscore's own sidecar is replaced by a new run."""
    out, sidecar = tmp_path / name, tmp_path / f"{name}.kscore.json"
    sidecar.write_text("my notes\n")
    with pytest.raises(OutputError, match="this file was not written by kscore"):
        check_output(out, [])
    with pytest.raises(OutputError, match="this file was not written by kscore"):
        write_table_atomic(pl.DataFrame({"a": [1]}), out, {"kscore_version": "x", "command": "select"})
    assert sidecar.read_text() == "my notes\n" and not out.exists()
    sidecar.write_text('{"kscore_version": "0.6.2", "command": "difficulty"}')
    check_output(out, [])
    write_table_atomic(pl.DataFrame({"a": [1]}), out, {"kscore_version": "0.6.3", "command": "select"})
    assert read_kscore_metadata(out) == {"kscore_version": "0.6.3", "command": "select"}
    with pytest.raises(InputError, match=f"its metadata file {name}.kscore.json would overwrite an input"):
        check_output(out, [sidecar])


def test_a_signal_while_an_output_is_put_in_place_waits_until_it_is_there(tmp_path, monkeypatch):
    """A CSV output is two renames (its sidecar, then the table): a signal arriving at the first
    stops the run only once both are done, and the error line says the output was written (SPEC
    section 9); a signal before any rename leaves nothing and says so."""
    import os
    import signal

    from kscore import storage
    from kscore.cli import signals as cli_exit
    from kscore.io import read_kscore_metadata, write_table_atomic

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    real_replace = os.replace
    renames = []

    def replace_and_signal(source, target):  # as if Ctrl-C arrived at the first rename
        if not renames:
            cli_exit.on_signal(signal.SIGINT, None)
        renames.append(target)
        real_replace(source, target)

    monkeypatch.setattr(storage, "PUBLISHED", [])
    monkeypatch.setattr(os, "replace", replace_and_signal)
    out = tmp_path / "o.csv"
    try:
        with pytest.raises(KeyboardInterrupt):
            write_table_atomic(
                pl.DataFrame({"id": [1, 2]}), out, {"kscore_version": "x", "command": "select"}
            )
        assert len(renames) == 2  # the sidecar and the table, both, before the interrupt
        assert pl.read_csv(out).height == 2 and read_kscore_metadata(out)["command"] == "select"
        assert cli_exit.interrupted("interrupted (Ctrl-C)") == (
            f"error: interrupted (Ctrl-C) after the output was written: {out}"
        )
        storage.PUBLISHED.clear()
        assert (
            cli_exit.interrupted("terminated (SIGTERM)")
            == "error: terminated (SIGTERM); no output was written"
        )
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "o.csv.kscore.json"]  # no temporary
