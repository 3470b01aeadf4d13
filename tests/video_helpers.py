"""Tiny generated videos and configs shared by the data and CLI tests.

Frame t of `make_video` has red = step * t, so decoded frame positions can be read back
from the pixels (`frame_numbers`).
"""
import os

import numpy as np

from vivit_jax import config as config_lib
from vivit_jax.data import video_files

FRAMES, SIZE = 16, 32
CLASSES = ['cat', 'dog', 'eel']


def make_video(num_frames=FRAMES, height=SIZE, width=SIZE, label=0, step=15):
  """uint8[T, H, W, 3]: red = step * t (frame number t), green = 80 label, blue = a
  ramp along x."""
  t = np.arange(num_frames)[:, None, None]
  x = np.arange(width)[None, None, :]
  video = np.zeros((num_frames, height, width, 3), np.uint8)
  video[..., 0] = step * t
  video[..., 1] = 80 * label
  video[..., 2] = (x * 255 // max(width - 1, 1))
  return video


def frame_numbers(frames, step=15):
  """Frame numbers read back from the red channel of decoded frames [..., H, W, 3]."""
  return np.round(frames[..., 0].mean(axis=(-1, -2)) / step).astype(int)


def write_bad_files(folder):
  """A corrupt, an empty, a truncated and an audio-only file in `folder`."""
  import av
  with open(os.path.join(folder, 'corrupt.mp4'), 'wb') as f:
    f.write(b'\x00\x00\x00\x18ftypmp42' + os.urandom(2000))
  open(os.path.join(folder, 'empty.mp4'), 'wb').close()
  good = os.path.join(folder, '_tmp.mp4')
  video_files.write_video(good, make_video())
  with open(good, 'rb') as f:
    payload = f.read()
  os.remove(good)
  with open(os.path.join(folder, 'truncated.mp4'), 'wb') as f:
    f.write(payload[:len(payload) // 3])
  with av.open(os.path.join(folder, 'audio_only.m4a'), 'w') as container:
    stream = container.add_stream('aac', rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format='fltp',
                                       layout='mono')
    frame.sample_rate = 16000
    for packet in list(stream.encode(frame)) + list(stream.encode()):
      container.mux(packet)


def make_config(data_dir, **overrides):
  c = config_lib.default_config()
  d = c.dataset
  d.name = 'video_files'
  d.data_dir = str(data_dir)
  d.num_frames, d.crop_size, d.num_classes, d.stride = 4, 16, 3, 2
  d.num_workers, d.max_failure_fraction = 2, 0.5
  for key, value in overrides.items():
    d[key] = value
  return c
