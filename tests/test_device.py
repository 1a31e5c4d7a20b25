"""The model on a GPU: device names are checked before anything loads; on a CUDA machine every family and every
method that moves tensors between the CPU's bookkeeping and the model's device gives the CPU's answers and
counters. (CI has no GPU: the CUDA test runs where there is one, e.g. `python -m pytest tests/test_device.py`.)"""
import pytest
import torch
from clips import moving_square_clip
from tiny import WORDS

from codecsight.errors import ConfigError
from codecsight.models.base import resolve_device
from codecsight.runtime import Engine, Question, method

HW = (112, 112)  # square: InternVL takes square tiles
Q = Question("is there a red object ?", window=8, stride=2)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
# pruned ViT in both modes, KV reuse by plan and by a model check (CacheBlend), post-ViT dropping (EVS), STC's
# cacher, the cached grid and linger
METHODS = ["full", "codecsight", "codecsight:vit_mode=isolated", "codecsight-cached", "codecsight:linger=0",
           "cacheblend", "evs:retention=0.5", "stc"]


def test_device_names_are_checked():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, why in [("gpu", "not a torch device"), ("cuda:x", "not a torch device"), ("mps", "only cpu and cuda"),
                     ("cuda:99", "CUDA")]:
        with pytest.raises(ConfigError, match=why):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_gpu_the_machine_lacks_is_a_clear_error(clip_dir, capsys):
    from codecsight.cli import main

    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    clip = moving_square_clip(str(clip_dir / "device.mp4"), n=20)
    assert main(["watch", clip, "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def _run(adapter, clip):
    eng = Engine(adapter, [method(m) for m in METHODS], [Q], fps=2.0, input_hw=adapter.geometry.snap(*HW))
    eng.add_stream(clip, "square")
    events = []
    reports = eng.run(events.append)
    assert not any(r.error for r in reports)
    return {(e.method, e.stream, e.window): e.p_yes for e in events}, \
        {(r.name, m): (c.tokens_encoded, c.windows, c.vit_flops, c.llm_flops) for r in reports
         for m, c in r.counters.items()}


@cuda
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "internvl3"])
def test_cuda_gives_the_cpu_answers(family, clip_dir):
    from codecsight.models.internvl3 import InternVL3Adapter
    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
    from codecsight.models.qwen3_vl import Qwen3VLAdapter
    from codecsight.reference.model import word_tokenizer

    cls = {"qwen2_5_vl": Qwen25VLAdapter, "qwen3_vl": Qwen3VLAdapter, "internvl3": InternVL3Adapter}[family]
    clip = moving_square_clip(str(clip_dir / "dev80.mp4"), n=80)
    ad = cls.tiny()  # the same weights on both devices
    ad.tokenizer = word_tokenizer(WORDS)
    cpu_answers, cpu_counters = _run(ad, clip)
    ad.model.to("cuda")
    gpu_answers, gpu_counters = _run(ad, clip)
    assert ad.model.device.type == "cuda"
    assert gpu_answers.keys() == cpu_answers.keys() and len(cpu_answers) == len(METHODS) * 5
    worst = max(abs(gpu_answers[k] - cpu_answers[k]) for k in cpu_answers)
    assert worst < 2e-3, worst
    assert gpu_counters == cpu_counters


@cuda
def test_models_made_for_a_gpu_leave_cudnn_attention_out():
    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter

    Qwen25VLAdapter.tiny(device="cuda")
    assert not torch.backends.cuda.cudnn_sdp_enabled() and torch.backends.cuda.flash_sdp_enabled()


@cuda
def test_watch_runs_the_bundled_model_on_cuda(capsys):
    from clips import shared_clip

    from codecsight.cli import main

    rc = main(["watch", shared_clip("bottle"), "--device", "cuda", "--compare", "full", "--answer-tokens", "0"])
    out = capsys.readouterr().out
    assert rc == 0 and "agreement with full:" in out
