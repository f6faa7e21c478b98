"""The data subcommands of `hello-dl`, run through hello_dl.cli.main exactly as the shell runs them."""

from __future__ import annotations

import socket

import numpy as np
from PIL import Image

from hello_dl.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fetch_then_reuse(shared_dataset, tmp_path, capsys, untouched):
    untouched(shared_dataset)
    data_dir = tmp_path / "data"
    code, out, _ = run(capsys, "fetch", "--profile", "smoke", "--source", str(shared_dataset), "--data-dir", str(data_dir))
    assert code == 0 and f"Data ready and verified in {data_dir}" in out
    assert (data_dir / "TRAIN" / "openI_CXR").is_dir()
    code, out, _ = run(capsys, "fetch", "--source", str(shared_dataset), "--data-dir", str(data_dir))
    assert code == 0 and "verified" in out


def test_fetch_reads_the_source_from_the_environment(shared_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HELLO_DL_DATA_SOURCE", str(shared_dataset))
    monkeypatch.setenv("HELLO_DL_DATA_DIR", str(tmp_path / "from env"))
    code, out, _ = run(capsys, "fetch")
    assert code == 0 and str(tmp_path / "from env") in out


def test_fetch_offline_prints_the_manual_route_without_traceback(tmp_path, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = run(capsys, "fetch", "--source", f"http://127.0.0.1:{port}/Open_I_abd_vs_CXRs.zip",
                         "--data-dir", str(tmp_path / "data"))
    assert code == 2 and out == ""
    assert err.startswith("hello-dl: Could not download") and "hello-dl fetch --source" in err
    assert "Traceback" not in err


def test_data_summary_on_the_shared_copy(shared_dataset, capsys):
    code, out, _ = run(capsys, "data-summary", "--data-dir", str(shared_dataset))
    assert code == 0
    assert "65 train / 10 val (9 distinct) / 2 test" in out
    assert "0 → openI_CXR → chest" in out and "1 → openI_abd_xray → abdomen" in out
    assert "within VAL: VAL/openI_abd_xray/PMC2584007_1752-1947-2-335-2 (1).png" in out


def test_data_summary_of_a_missing_folder(tmp_path, capsys):
    code, _, err = run(capsys, "data-summary", "--data-dir", str(tmp_path / "absent"))
    assert code == 2 and "hello-dl fetch" in err


def test_split_then_rerun_then_refuse(tmp_path, capsys, untouched):
    source = tmp_path / "mine"
    rng = np.random.default_rng(0)
    for cls in ("chest", "abdomen"):
        (source / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(source / cls / f"{i}.png")
    untouched(source)
    destination = tmp_path / "split"
    code, out, _ = run(capsys, "split", str(source), str(destination), "--set", "val_fraction=0.34")
    assert code == 0 and "Split 12 images" in out and "class_folders=abdomen,chest" in out
    code, out, _ = run(capsys, "split", str(source), str(destination), "--set", "val_fraction=0.34")
    assert code == 0 and "already holds exactly this split" in out
    code, _, err = run(capsys, "split", str(source), str(destination), "--set", "seed=3", "--set", "val_fraction=0.34")
    assert code == 2 and "holds a different split" in err


def test_dicom_to_png(tmp_path, capsys, dicom_file, untouched):
    source = tmp_path / "dicom"
    dicom_file(source / "one.dcm", np.arange(100 * 100, dtype=np.uint16).reshape(100, 100) % 4096, bits_stored=12)
    untouched(source)
    code, out, _ = run(capsys, "dicom-to-png", str(source), str(tmp_path / "png"))
    assert code == 0 and f"1 PNG file(s) were written to {tmp_path / 'png'}." in out
    code, out, _ = run(capsys, "dicom-to-png", str(source), str(tmp_path / "png"))
    assert code == 0 and "0 PNG file(s) were written" in out and "1 skipped" in out  # a rerun keeps the PNG
    assert Image.open(tmp_path / "png" / "one.png").size == (100, 100)
