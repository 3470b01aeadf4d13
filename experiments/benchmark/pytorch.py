"""The PyTorch counterparts of our configs, built locally with random weights at the same
shapes: Hugging Face transformers (ViViT Model 1 with tubelets, TimeSformer) and
torchvision (MViT v1/v2, Video Swin). torch, transformers and torchvision are optional:
each is imported inside the functions that need it."""
from __future__ import annotations

import sys

from vivit_jax.models import mvit


def torch_available() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


def hf_available() -> bool:
  try:
    import transformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return torch_available()


def torchvision_available() -> bool:
  try:
    import torchvision  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except Exception:   # pylint: disable=broad-except
    # ImportError, or a torchvision built for another torch (RuntimeError at import).
    return False
  return True


def versions() -> dict:
  """{torch, torch_threads, transformers, torchvision}: those installed."""
  out = {}
  if torch_available():
    import torch  # pylint: disable=import-outside-toplevel
    out.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
  if hf_available():
    import transformers  # pylint: disable=import-outside-toplevel
    out.update(transformers=transformers.__version__)
  if torchvision_available():
    import torchvision  # pylint: disable=import-outside-toplevel
    out.update(torchvision=torchvision.__version__)
  return out


def hf_model(config):
  """(model, attention) of the Hugging Face counterpart of `config`, random weights, on
  the CPU in float32, or None where transformers has none (or is not installed)."""
  m, d = config.model, config.dataset
  if not ((m.name == 'vivit' and m.attention_type == 'spatio_temporal'
           and m.embedding == 'tubelet' and m.classifier == 'token')
          or m.name == 'timesformer') or not hf_available():
    return None
  import transformers  # pylint: disable=import-outside-toplevel
  act = 'gelu_pytorch_tanh' if m.get('gelu_approximate', False) else 'gelu'
  common = dict(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
                num_attention_heads=m.num_heads, intermediate_size=m.mlp_dim,
                hidden_act=act, layer_norm_eps=m.get('layer_norm_epsilon', 1e-6),
                image_size=d.crop_size, num_frames=d.num_frames, num_labels=d.num_classes,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  if m.name == 'vivit':
    hf_config = transformers.VivitConfig(
        tubelet_size=[m.temporal_patch_size, *m.patch_size], qkv_bias=True, **common)
    cls = transformers.VivitForVideoClassification
  else:
    hf_config = transformers.TimesformerConfig(
        patch_size=m.patch_size[0], attention_type=m.attention_type, **common)
    cls = transformers.TimesformerForVideoClassification
  for attn in ('sdpa', 'eager'):   # TimeSformer has no sdpa path in transformers 5.
    hf_config._attn_implementation = attn   # pylint: disable=protected-access
    try:
      return cls(hf_config), attn
    except ValueError:
      continue
  raise RuntimeError(f'{cls.__name__} could not be built with sdpa or eager attention')


def torchvision_model(config):
  """(model, attention) of torchvision's MViT (v1-B, v2-S) or Swin3D counterpart of
  `config`, random weights, float32 on the CPU, or None (not those models, torchvision
  missing). Our stochastic depth rate (and MViT's head dropout); eager attention (matmul,
  softmax, matmul)."""
  m, d = config.model, config.dataset
  if m.name not in ('mvit', 'video_swin') or not torchvision_available():
    return None
  from torchvision.models import video  # pylint: disable=import-outside-toplevel
  common = dict(num_classes=d.num_classes, stochastic_depth_prob=m.stochastic_depth)
  if m.name == 'mvit':
    # torchvision's builders fix the clip at 16x224^2: its MViT class from our block
    # schedule (widths, heads, pooling kernels and strides per block) instead.
    t, h, w = (n // s for n, s in zip((d.num_frames, d.crop_size, d.crop_size),
                                      m.patch_stride))
    blocks = [video.mvit.MSBlockConfig(
        num_heads=b.num_heads, input_channels=b.dim, output_channels=b.dim_out,
        kernel_q=list(b.q_kernel), kernel_kv=list(b.kv_kernel), stride_q=list(b.q_stride),
        stride_kv=list(b.kv_stride)) for b in mvit.block_specs(m, (t, h, w))]
    v2 = bool(m.rel_pos_spatial)
    model = video.mvit.MViT(
        spatial_size=(d.crop_size, d.crop_size), temporal_size=d.num_frames,
        block_setting=blocks, residual_pool=bool(m.residual_pooling),
        residual_with_cls_embed=False, rel_pos_embed=v2,
        proj_after_attn=bool(m.dim_mul_in_att),
        dropout=m.head_dropout_rate, patch_embed_kernel=tuple(m.patch_kernel),
        patch_embed_stride=tuple(m.patch_stride),
        patch_embed_padding=tuple(m.patch_padding), **common)
  else:
    model = video.swin_transformer.SwinTransformer3d(
        patch_size=[m.temporal_patch_size, *m.patch_size], embed_dim=m.embed_dim,
        depths=list(m.depths), num_heads=list(m.num_heads),
        window_size=list(m.window_size), mlp_ratio=m.mlp_ratio, **common)
  return model, 'eager'


def pytorch_model(config, num_params: int):
  """(model, attention) of the PyTorch counterpart of `config` with `num_params`
  parameters like ours, or None. A counterpart whose parameter count differs is not the
  same architecture (e.g. a reduced config torchvision cannot express): skipped, said."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  built = hf_model(config) or torchvision_model(config)
  if built is None:
    return None
  theirs = sum(p.numel() for p in built[0].parameters())
  if theirs != num_params:
    print(f'# no PyTorch comparison: {type(built[0]).__name__} has {theirs} parameters, '
          f'ours {num_params}', file=sys.stderr, flush=True)
    return None
  return built


class Theirs:
  """Inference and a training step of the PyTorch counterpart (`pytorch_model`), on the
  GPU where torch sees one, in the config's dtype. The training step is forward,
  cross-entropy, backward, global-norm clipping and SGD momentum."""

  def __init__(self, config, model, attn):
    import torch  # pylint: disable=import-outside-toplevel
    self.config, self.attn = config, attn
    self.hf = type(model).__module__.startswith('transformers')
    self.name = (type(model).__name__.replace('ForVideoClassification', '') if self.hf
                 else f'torchvision {type(model).__name__}')
    self.dtype = (torch.bfloat16 if config.model.get('dtype', 'float32') == 'bfloat16'
                  else torch.float32)
    self.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    self.model = model.to(device=self.device, dtype=self.dtype)

  def _inputs(self, batch):
    """(video, labels [B]): video [B, T, C, H, W] (Hugging Face) or [B, C, T, H, W]."""
    import torch  # pylint: disable=import-outside-toplevel
    d = self.config.dataset
    g = torch.Generator().manual_seed(1)
    video = torch.randn((batch, d.num_frames, 3, d.crop_size, d.crop_size), generator=g)
    if not self.hf:
      video = video.transpose(1, 2).contiguous()   # torchvision: [B, C, T, H, W].
    labels = torch.randint(0, d.num_classes, (batch,), generator=g)
    return video.to(self.device, self.dtype), labels.to(self.device)

  def _logits(self, video):
    return self.model(pixel_values=video).logits if self.hf else self.model(video)

  def _sync(self):
    import torch  # pylint: disable=import-outside-toplevel
    if self.device == 'cuda':
      torch.cuda.synchronize()

  def make_inference(self, batch):
    """run() -> blocks: one forward pass at `batch` under `torch.inference_mode`."""
    import torch  # pylint: disable=import-outside-toplevel
    video, _ = self._inputs(batch)
    self.model.eval()

    def run():
      with torch.inference_mode():
        self._logits(video).float().cpu()
      self._sync()
    return run

  def make_train(self, batch):
    """run() -> blocks: one optimiser update at `batch`."""
    import torch  # pylint: disable=import-outside-toplevel
    video, labels = self._inputs(batch)
    opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)

    def run():
      self.model.train()
      logits = self._logits(video).float()
      if logits.shape[0] != labels.shape[0]:
        # transformers' TimeSformer 'space_only' classifies every frame ([B*T, classes]);
        # the original (and ours) averages the frames first.
        logits = logits.reshape(labels.shape[0], -1, logits.shape[-1]).mean(1)
      loss = torch.nn.functional.cross_entropy(logits, labels)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
      opt.step()
      opt.zero_grad(set_to_none=True)
      loss.item()
      self._sync()
    return run
