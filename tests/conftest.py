import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from clips import moving_square_clip  # noqa: E402


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def square_clip(clip_dir):
    """H.264, 10 fps, GOP 10, no B-frames, 40 frames: a square enters at frame 10 and moves right."""
    return moving_square_clip(str(clip_dir / "square.mp4"))


@pytest.fixture(scope="session")
def square_clip_b(clip_dir):
    """The same scene with B-frames."""
    return moving_square_clip(str(clip_dir / "square_b.mp4"), bframes=3)
