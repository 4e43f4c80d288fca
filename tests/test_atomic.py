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
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_text(fifo, "through")
    reader.join(5)
    assert got == ["through"] and fifo.is_fifo()
