import numpy as np
import pytest
from modeling_stdd.video_io import write_video


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".webm"])
def test_written_videos_decode_with_their_frame_count(make_video, suffix):
    import decord

    path = make_video(f"clip{suffix}", num_frames=12)
    assert len(decord.VideoReader(str(path))) == 12


def test_write_video_refuses_wrong_frames_and_suffix(tmp_path):
    with pytest.raises(ValueError, match="uint8 of shape"):
        write_video(tmp_path / "a.mp4", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="unsupported video suffix"):
        write_video(tmp_path / "a.gif", np.zeros((4, 8, 8, 3), np.uint8))
