"""Where the pretrained weights come from: cache, real download path (local HTTP server), clear errors."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import shutil
import socket
import threading
from pathlib import Path

import pytest

from hello_dl import weights
from hello_dl.errors import WeightsError
from hello_dl.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _settings(**overrides):
    return load_settings("smoke", environ={}, **overrides)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


class _Server:
    """A static file server on 127.0.0.1 in a background thread, counting requests."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    server = _Server(folder)
    yield folder, server
    server.close()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{weights.WEIGHTS_FILE_NAME}"


def test_choices_and_none():
    assert weights.weights_choice(_settings(weights="none")) == "none"
    assert weights.weights_choice(_settings(weights="ImageNet")) == "imagenet"
    assert weights.weights_choice(_settings(weights="/x/y.h5")) == "file"
    assert weights.resolve_weights(_settings(weights="none")) is None
    assert not weights.uses_pretrained_weights(_settings(weights="none"))


def test_hash_is_the_one_keras_uses_for_the_notop_file():
    import keras

    source = Path(keras.__file__).parent / "src" / "applications" / "inception_v3.py"
    text = source.read_text()
    assert weights.WEIGHTS_FILE_NAME in text
    assert f'file_hash="{weights.WEIGHTS_FILE_HASH}"' in text
    assert weights.WEIGHTS_URL.rsplit("/", 1)[0] in text.replace('"\n    "', "")


def test_cache_path_follows_keras_home(keras_home):
    assert weights.cached_weights_path() == keras_home / "models" / weights.WEIGHTS_FILE_NAME


def test_download_through_keras_get_file_then_cache(inception_notop_h5, served, keras_home, monkeypatch):
    folder, server = served
    shutil.copyfile(inception_notop_h5, folder / weights.WEIGHTS_FILE_NAME)
    monkeypatch.setattr(weights, "WEIGHTS_URL", server.url(weights.WEIGHTS_FILE_NAME))
    monkeypatch.setattr(weights, "WEIGHTS_FILE_HASH", _md5(inception_notop_h5))

    path = Path(weights.resolve_weights(_settings(weights="imagenet")))
    assert path == keras_home / "models" / weights.WEIGHTS_FILE_NAME
    assert _md5(path) == _md5(inception_notop_h5)
    assert server.requests == ["/" + weights.WEIGHTS_FILE_NAME]
    assert sorted(p.name for p in path.parent.iterdir()) == [weights.WEIGHTS_FILE_NAME]  # no staging left

    # Second time: found in the cache, no request, even with the network gone.
    monkeypatch.setattr(weights, "WEIGHTS_URL", _closed_port_url())
    assert Path(weights.resolve_weights(_settings(weights="imagenet"))) == path
    assert Path(weights.prefetch_weights(_settings(weights="none"))) == path
    assert len(server.requests) == 1


def test_offline_without_cached_file_says_what_to_do(keras_home, monkeypatch):
    monkeypatch.setattr(weights, "WEIGHTS_URL", _closed_port_url())
    with pytest.raises(WeightsError) as caught:
        weights.resolve_weights(_settings(weights="imagenet"))
    message = str(caught.value)
    assert weights.WEIGHTS_FILE_NAME in message  # which file
    assert str(keras_home / "models" / weights.WEIGHTS_FILE_NAME) in message  # where to put it
    assert "hello-dl fetch --weights" in message and "scripts/prefetch.py" in message  # how to get it
    assert "HELLO_DL_WEIGHTS=none" in message  # how to go on without
    assert not (keras_home / "models" / weights.WEIGHTS_FILE_NAME).exists()


def test_download_with_wrong_checksum_is_refused_and_removed(served, keras_home, monkeypatch):
    folder, server = served
    (folder / weights.WEIGHTS_FILE_NAME).write_bytes(b"not the weights you are looking for")
    monkeypatch.setattr(weights, "WEIGHTS_URL", server.url(weights.WEIGHTS_FILE_NAME))
    with pytest.raises(WeightsError, match="damaged or incomplete"):
        weights.resolve_weights(_settings(weights="imagenet"))
    assert list((keras_home / "models").iterdir()) == []  # neither the file nor a temporary folder


def test_damaged_cache_file_offline_is_named(keras_home, monkeypatch):
    cached = keras_home / "models" / weights.WEIGHTS_FILE_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x89HDF half a file")
    monkeypatch.setattr(weights, "WEIGHTS_URL", _closed_port_url())
    with pytest.raises(WeightsError, match="damaged or incomplete") as caught:
        weights.resolve_weights(_settings(weights="imagenet"))
    assert str(cached) in str(caught.value)
    assert cached.read_bytes() == b"\x89HDF half a file"  # not deleted: it was there before
    assert list(cached.parent.iterdir()) == [cached]


def test_a_good_download_replaces_a_damaged_cached_file(inception_notop_h5, served, keras_home, monkeypatch):
    folder, server = served
    shutil.copyfile(inception_notop_h5, folder / weights.WEIGHTS_FILE_NAME)
    monkeypatch.setattr(weights, "WEIGHTS_URL", server.url(weights.WEIGHTS_FILE_NAME))
    monkeypatch.setattr(weights, "WEIGHTS_FILE_HASH", _md5(inception_notop_h5))
    cached = keras_home / "models" / weights.WEIGHTS_FILE_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x89HDF half a file")
    assert Path(weights.resolve_weights(_settings(weights="imagenet"))) == cached
    assert _md5(cached) == _md5(inception_notop_h5) and list(cached.parent.iterdir()) == [cached]


def test_explicit_file_path_is_checked_and_used(inception_notop_h5):
    assert weights.resolve_weights(_settings(weights=str(inception_notop_h5))) == str(inception_notop_h5)


def test_missing_explicit_file(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(WeightsError, match="does not exist") as caught:
        weights.resolve_weights(_settings(weights=str(missing)))
    assert str(missing) in str(caught.value) and "HELLO_DL_WEIGHTS=none" in str(caught.value)


def test_corrupt_files_give_clear_errors(tmp_path, inception_notop_h5):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5 at all" * 100)
    with pytest.raises(WeightsError, match="not an HDF5") as caught:
        weights.resolve_weights(_settings(weights=str(garbage)))
    assert str(garbage) in str(caught.value)

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(inception_notop_h5.read_bytes()[: 2_000_000])  # an interrupted copy
    with pytest.raises(WeightsError) as caught:
        weights.resolve_weights(_settings(weights=str(truncated)))
    assert str(truncated) in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_mismatched_file_is_refused(tmp_path):
    import keras

    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    other = tmp_path / "other_network.h5"
    small.save(other)
    with pytest.raises(WeightsError, match="does not fit InceptionV3") as caught:
        weights.resolve_weights(_settings(weights=str(other)))
    assert "2 layers with weights" in str(caught.value)


def test_prefetch_script_copies_data_and_fetches_weights(shared_dataset, inception_notop_h5, served, keras_home,
                                                       monkeypatch, tmp_path, capsys):
    folder, server = served
    shutil.copyfile(inception_notop_h5, folder / weights.WEIGHTS_FILE_NAME)
    monkeypatch.setattr(weights, "WEIGHTS_URL", server.url(weights.WEIGHTS_FILE_NAME))
    monkeypatch.setattr(weights, "WEIGHTS_FILE_HASH", _md5(inception_notop_h5))
    spec = importlib.util.spec_from_file_location("prefetch_script", PROJECT_ROOT / "scripts" / "prefetch.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    data_dir = tmp_path / "data"
    assert script.main(["--data-source", str(shared_dataset), "--data-dir", str(data_dir), "--skip-weights"]) == 0
    assert (data_dir / "TRAIN" / "openI_CXR").is_dir()
    assert not (keras_home / "models" / weights.WEIGHTS_FILE_NAME).exists()
    assert server.requests == []

    assert script.main(["--skip-data"]) == 0
    assert (keras_home / "models" / weights.WEIGHTS_FILE_NAME).is_file()
    output = capsys.readouterr().out
    assert str(data_dir) in output and weights.WEIGHTS_FILE_NAME in output
