"""One GPU shared by many kernels: memory growth (or a per-process cap) before TensorFlow uses it.

This machine has no GPU, so the GPU branch is exercised with a recording stand-in for
``tf.config`` (the decision logic) and the real TensorFlow on the CPU (the no-GPU report).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hello_dl import environment
from hello_dl.cli import main
from hello_dl.errors import HelloDLError


class RecordingConfig:
    """Stands in for ``tf.config``: records what the kit asked for, or refuses like TensorFlow
    does once the GPU is already in use."""

    def __init__(self, refuse: bool = False):
        self.refuse = refuse
        self.calls: list[tuple] = []
        self.experimental = self

    def set_memory_growth(self, device, enable):
        if self.refuse:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        self.calls.append(("growth", device, enable))

    def set_logical_device_configuration(self, device, configs):
        if self.refuse:
            raise RuntimeError("Virtual devices cannot be modified after being initialized")
        self.calls.append(("cap", device, [c.memory_limit for c in configs]))

    class LogicalDeviceConfiguration:
        def __init__(self, memory_limit):
            self.memory_limit = memory_limit


def test_importing_the_kit_turns_on_memory_growth_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    code = "import os, hello_dl; print(os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "true"
    env["TF_FORCE_GPU_ALLOW_GROWTH"] = "false"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "false"


def test_growth_on_every_gpu_by_default():
    config = RecordingConfig()
    policy = environment.apply_gpu_memory_policy(config, ["GPU:0", "GPU:1"], None)
    assert policy == {"mode": "growth", "devices": 2}
    assert config.calls == [("growth", "GPU:0", True), ("growth", "GPU:1", True)]


def test_a_cap_gives_each_gpu_one_limited_logical_device():
    config = RecordingConfig()
    policy = environment.apply_gpu_memory_policy(config, ["GPU:0"], 2048)
    assert policy == {"mode": "cap", "cap_mb": 2048, "devices": 1}
    assert config.calls == [("cap", "GPU:0", [2048])]


def test_too_late_is_reported_not_raised(monkeypatch):
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    policy = environment.apply_gpu_memory_policy(RecordingConfig(refuse=True), ["GPU:0"], None)
    assert policy["mode"] == "too late" and policy["growth_from_env"] is True
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")
    assert environment.apply_gpu_memory_policy(RecordingConfig(refuse=True), ["GPU:0"], None)["growth_from_env"] is False


def test_no_gpu_means_nothing_to_change():
    config = RecordingConfig()
    assert environment.apply_gpu_memory_policy(config, [], 4096) == {"mode": "none"}
    assert config.calls == []


@pytest.mark.parametrize("raw, expected", [("", None), ("  ", None), ("2048", 2048), (" 4096 ", 4096)])
def test_the_cap_from_the_environment(raw, expected):
    assert environment.gpu_memory_cap({environment.GPU_MEMORY_ENV: raw}) == expected
    assert environment.gpu_memory_cap({}) is None


@pytest.mark.parametrize("raw", ["2GB", "-1", "100", "1.5"])
def test_a_bad_cap_is_a_plain_error_naming_the_variable(raw):
    with pytest.raises(HelloDLError, match=f"{environment.GPU_MEMORY_ENV}=.*at least 256"):
        environment.gpu_memory_cap({environment.GPU_MEMORY_ENV: raw})


def test_env_report_says_there_is_no_gpu_memory_here(capsys):
    if environment.gpus():  # pragma: no cover - only on a machine with a GPU
        pytest.skip("this machine has a GPU; the no-GPU sentence cannot be checked here")
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "GPU memory: none here (no GPU)" in out
    assert environment.limit_gpu_memory() == {"mode": "none"}
