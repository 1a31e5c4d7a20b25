"""The token plan on change maps of a real camera clip (sampled at 2 fps, 448x448)."""
from pathlib import Path

import numpy as np
import pytest

from codecsight.geometry import INTERNVL3, QWEN2_5_VL
from codecsight.plan import PlanConfig, planned_samples

VIDEOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos"
HW = (448, 448)


def plans_of(clip, geometry, config=PlanConfig()):
    path = VIDEOS / clip
    if not path.exists():
        pytest.skip(f"{path} not present")
    steps = list(planned_samples(str(path), geometry, HW, config=config))  # as the runtime plans
    return [c for _, c, _ in steps], [p for _, _, p in steps if p is not None]


def test_qwen_plan_on_bottle_clip():
    changes, plans = plans_of("intel_bottle-detection.mp4", QWEN2_5_VL)
    assert len(plans) == len(changes) // 2 and [p.index for p in plans] == list(range(len(plans)))
    assert plans[0].reason == "full" and plans[0].kept == plans[0].total == 16 * 16
    for p in plans:
        pair = changes[2 * p.index: 2 * p.index + 2]
        assert p.frames == tuple(c.index for c in pair)
        if p.reason == "changed":  # default plan: exactly the union of the two frames' changes
            assert np.array_equal(p.keep, pair[0].changed | pair[-1].changed)
        else:
            assert p.keep.all()
    reasons = "".join("-" if p.reason == "changed" else "F" for p in plans)
    assert "-" * 8 not in reasons  # at least one full encoding every 8 temporal patches
    fraction = sum(p.kept for p in plans) / sum(p.total for p in plans)
    assert 0.3 < fraction < 0.75, fraction  # almost static scene: about half the tokens (0.54 measured)


def test_internvl_plan_on_car_clip_is_per_frame():
    changes, plans = plans_of("intel_car-detection.mp4", INTERNVL3, PlanConfig(refresh_every=None, cut_fraction=None))
    assert len(plans) == len(changes) and all(p.frames == (c.index,) for p, c in zip(plans, changes))
    assert [p.reason for p in plans] == ["full" if c.full else "changed" for c in changes]
    assert all(np.array_equal(p.keep, c.changed) for p, c in zip(plans, changes))
