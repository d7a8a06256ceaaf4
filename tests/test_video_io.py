import numpy as np
import pytest
from modeling_stdd.video_io import decode_frames_with_pyav, write_video
from modeling_stdd.video_processing_stdd import EncodedVideo, load_video_frames, probe_frame_size


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


def test_write_video_refuses_bad_rotation_and_frame_times(tmp_path):
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="multiple of 90"):
        write_video(tmp_path / "a.mp4", frames, rotation=45)
    with pytest.raises(ValueError, match="3 increasing times"):
        write_video(tmp_path / "a.mp4", frames, frame_times=[0.0, 0.5, 0.5])


def quadrant_video(height: int, width: int, num_frames: int = 3) -> np.ndarray:
    """Black frames with a white top-left quadrant: shows both the orientation and any squashing."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[:, : height // 2, : width // 2] = 255
    return frames


@pytest.mark.parametrize("rotation", [90, -90])
def test_rotated_phone_video_is_decoded_at_reduced_size_in_its_displayed_shape(tmp_path, rotation):
    """A 1920x1080 recording with a 90-degree display matrix is a portrait video: 796x448 at short side 448."""
    path = write_video(tmp_path / "phone.mp4", quadrant_video(1080, 1920, num_frames=2), rotation=rotation)
    assert probe_frame_size(str(path), "phone.mp4") == (1920, 1080)
    full = load_video_frames(path, num_frames=1)[0, 0]
    reduced = load_video_frames(path, num_frames=1, decode_short_side=448)[0, 0]
    assert full.shape == (1920, 1080, 3) and reduced.shape == (796, 448, 3)
    # Not squashed: the white quadrant of the reduced frame is where it is in the full frame, half of each side.
    white = np.argwhere(reduced[..., 0] > 128)
    full_white = np.argwhere(full[..., 0] > 128)
    assert white.min(0) == pytest.approx(full_white.min(0) * 448 / 1080, abs=2)
    assert white.max(0) == pytest.approx(full_white.max(0) * 448 / 1080, abs=2)
    assert (white.max(0) - white.min(0) + 1) == pytest.approx([398, 224], abs=2)


@pytest.mark.parametrize("height, width", [(48, 48), (48, 72), (72, 48), (24, 24), (64, 16)])
def test_small_videos_decord_pads_are_decoded_right(tmp_path, height, width):
    """decord fails on (or returns 4 padded channels for) some narrow widths; these valid videos decode all the same."""
    frames = quadrant_video(height, width, num_frames=5)
    path = write_video(tmp_path / "small.mp4", frames)
    decoded = load_video_frames(path, num_frames=5)[0]
    assert decoded.shape == (5, height, width, 3)
    assert np.abs(decoded.astype(int) - frames).mean() < 8


def test_pyav_decoding_matches_decord_with_rotation_and_reduced_size(tmp_path):
    """The PyAV path (used where decord lays frames out wrong) rotates and sizes frames as decord does."""
    path = write_video(tmp_path / "rotated.mp4", quadrant_video(96, 160, num_frames=6), rotation=90)
    for size in [None, (106, 64)]:
        reader = EncodedVideo(str(path), "rotated.mp4", size)
        expected = reader.get_batch([1, 4]).asnumpy()
        decoded = decode_frames_with_pyav(str(path), [1, 4], size)
        assert decoded.shape == expected.shape
        assert np.abs(decoded.astype(int) - expected).max() <= 4
    with pytest.raises(ValueError, match="it has 6 frames, frame 9 was asked for"):
        decode_frames_with_pyav(str(path), [2, 9], None)
