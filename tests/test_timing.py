"""Timing harness: what is timed, what is recorded, and thread settings."""

from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")

from dsasim.validate import timing  # noqa: E402


class CountingCall:
    """A callable that counts its calls and sleeps ``warmup_sleep_s`` on the first ``slow_calls``."""

    def __init__(self, slow_calls: int = 0, warmup_sleep_s: float = 0.0, sleep_s: float = 0.0) -> None:
        self.calls = 0
        self.slow_calls = slow_calls
        self.warmup_sleep_s = warmup_sleep_s
        self.sleep_s = sleep_s

    def __call__(self) -> None:
        self.calls += 1
        time.sleep(self.warmup_sleep_s if self.calls <= self.slow_calls else self.sleep_s)


def test_time_callable_positive_median() -> None:
    x = torch.randn(64, 64)

    record = timing.time_callable(lambda: x @ x, warmup=1, repeats=5, device=torch.device("cpu"))

    assert record.median_s > 0
    assert record.min_s <= record.median_s <= record.max_s
    assert record.iqr_s >= 0


def test_time_callable_records_conditions() -> None:
    record = timing.time_callable(
        lambda: None,
        warmup=0,
        repeats=3,
        device="cpu",
        dtype=torch.bfloat16,
        shapes={"kv_latent": torch.Size([4, 512]), "q": (1, 128, 512)},
    )

    assert record.device == "cpu"
    assert record.device_name != ""
    assert record.threads == torch.get_num_threads()
    assert record.torch_version == torch.__version__
    assert record.dtype == "bfloat16"
    assert record.shapes == {"kv_latent": (4, 512), "q": (1, 128, 512)}


def test_time_callable_to_dict_is_json() -> None:
    record = timing.time_callable(lambda: None, warmup=0, repeats=2, device="cpu", shapes={"x": (2, 3)})

    as_dict = json.loads(json.dumps(record.to_dict()))

    assert as_dict["shapes"] == {"x": [2, 3]}
    assert as_dict["repeats"] == 2
    assert len(as_dict["samples_s"]) == 2
    assert as_dict["median_s"] == record.median_s


def test_time_callable_excludes_warmup() -> None:
    call = CountingCall(slow_calls=2, warmup_sleep_s=0.2)

    record = timing.time_callable(call, warmup=2, repeats=4, device="cpu")

    assert call.calls == 6
    assert record.repeats == 4
    assert record.warmup == 2
    assert len(record.samples_s) == 4
    assert record.max_s < 0.1  # the 0.2 s warm-up calls are not in the samples


def test_time_callable_min_time_adds_repeats() -> None:
    call = CountingCall(sleep_s=0.002)

    record = timing.time_callable(call, warmup=0, repeats=2, device="cpu", min_time_s=0.03)

    assert record.repeats > 2
    assert record.repeats == call.calls
    assert sum(record.samples_s) >= 0.03


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"warmup": -1, "repeats": 1, "device": "cpu"}, "warmup must be >= 0, got -1"),
        ({"warmup": 0, "repeats": 0, "device": "cpu"}, "repeats must be >= 1, got 0"),
        ({"warmup": 0, "repeats": 1, "device": "meta"}, "unsupported device type 'meta'"),
    ],
)
def test_time_callable_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        timing.time_callable(lambda: None, **kwargs)  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_time_callable_cuda_records_gpu() -> None:
    x = torch.randn(256, 256, device="cuda")

    record = timing.time_callable(lambda: x @ x, warmup=2, repeats=5, device="cuda")

    assert record.median_s > 0
    assert record.device_name == torch.cuda.get_device_name()


def test_fixed_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()

    with timing.fixed_threads(1):
        inside = torch.get_num_threads()

    assert inside == 1
    assert torch.get_num_threads() == before


def test_fixed_threads_restores_after_error() -> None:
    before = torch.get_num_threads()

    with pytest.raises(RuntimeError, match="inside"), timing.fixed_threads(1):
        raise RuntimeError("inside")

    assert torch.get_num_threads() == before


def test_fixed_threads_rejects_zero() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"), timing.fixed_threads(0):
        pass


def test_achieved_rates() -> None:
    flops_per_s, bytes_per_s = timing.achieved(4e12, 6e9, 2.0)

    assert flops_per_s == 2e12
    assert bytes_per_s == 3e9


def test_achieved_rejects_zero_time() -> None:
    with pytest.raises(ValueError, match="time_s must be > 0, got 0"):
        timing.achieved(1.0, 1.0, 0.0)
