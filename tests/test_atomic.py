from pathlib import Path

import pytest

from edgeae.atomic import atomic_path, temp_name, write_bytes, write_text


def test_replaces_and_leaves_nothing(tmp_path: Path) -> None:
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]


def test_failure_keeps_old_and_removes_temp(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    write_text(p, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert p.read_text() == "old" and not temp_name(p).exists()


def test_an_oserror_without_a_path_names_the_target(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    with pytest.raises(OSError, match=r"cannot write .*x\.png: 9 requested") as e, atomic_path(p):
        raise OSError("9 requested and 3 written")
    assert str(p) in str(e.value) and not p.exists()


def test_a_temp_file_that_cannot_be_created_is_reported_as_the_target(tmp_path: Path) -> None:
    p = tmp_path / "missing_folder" / "r.json"
    with pytest.raises(OSError, match=r"cannot write .*missing_folder/r\.json") as e:
        write_text(p, "{}")
    assert ".tmp-" not in str(e.value)


def test_a_symlink_is_followed_and_a_fifo_written_through(tmp_path: Path) -> None:
    import os
    import threading

    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)  # never hangs the suite
    reader.start()
    write_text(fifo, "through")
    reader.join(5)
    assert got == ["through"] and fifo.is_fifo()


def test_dev_stdout_is_written_through_piped_or_appended(tmp_path: Path) -> None:
    """/dev/stdout resolves to /proc/self/fd/1: it was renamed over (a pipe: no such file; >> a file: its content
    replaced). Written through, both keep working (review r4, session 31)."""
    import subprocess
    import sys

    code = "from edgeae.atomic import write_text; write_text('/dev/stdout', 'hello\\n')"
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == "hello\n", piped.stderr
    log = tmp_path / "o.txt"
    log.write_text("old\n")
    with log.open("a") as f:
        appended = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=subprocess.PIPE, timeout=60)
    assert appended.returncode == 0 and log.read_text() == "old\nhello\n"


def test_a_fixed_temp_name_follows_a_symlinked_target(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (real_dir / "index.json").write_text("old")
    (tmp_path / "index.json").symlink_to(real_dir / "index.json")
    write_bytes(tmp_path / "index.json", b"new", temp=tmp_path / "index.json.tmp")
    assert (real_dir / "index.json").read_bytes() == b"new" and (tmp_path / "index.json").is_symlink()
    assert not (tmp_path / "index.json.tmp").exists() and not (real_dir / "index.json.tmp").exists()


def test_stdout_redirected_with_gt_keeps_what_the_program_prints_around_it(tmp_path: Path) -> None:
    """``> f``: the JSON went to /dev/stdout through a second opening, and the program's own buffered print then
    overwrote it at fd 1's offset (review r6). Written through sys.stdout, both stay, in order."""
    import subprocess
    import sys

    code = (
        "from edgeae.atomic import write_text; print('before'); write_text('/dev/stdout', 'payload\\n'); print('after')"
    )
    out = tmp_path / "f.txt"
    with out.open("w") as f:
        r = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0 and out.read_text() == "before\npayload\nafter\n", r.stderr


def test_a_regular_file_under_dev_shm_is_replaced_not_appended() -> None:
    import os

    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    p = Path("/dev/shm") / f"edgeae-test-{os.getpid()}.json"
    try:
        write_text(p, "one")
        write_text(p, "two")
        assert p.read_text() == "two"
    finally:
        p.unlink(missing_ok=True)


def test_a_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        write_text(tmp_path, "x")
