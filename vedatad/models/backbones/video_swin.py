"""Video Swin Transformer backbone (Liu et al., 2022) as a temporal feature extractor.

The network itself is torchvision's ``SwinTransformer3d`` (same computation as the official
Video Swin code once the weights are renamed, see ``vswin_checkpoint.py``), its window
attention computed by ``scaled_dot_product_attention`` (``swin_attention.py``); this wrapper adds
what temporal action detection needs: no classification head, per-frame-pair features
(B, C, T/2) from the final norm averaged over space, frozen leading stages, activation
checkpointing of trainable blocks and an independent-chunk forward for long windows.

State-dict keys are torchvision's (``patch_embed.*``, ``features.{k}.*``, ``norm.*``).
"""
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ...registry import MODELS
from .vswin_checkpoint import load_vswin_weights

ARCH_PRESETS = {
    'tiny': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    # A few-hundred-thousand-parameter network that runs fast on a CPU: used by the
    # end-to-end demo on 112x112 synthetic videos and by tests. Not a published model.
    'demo': dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
}


def resolve_arch(arch, embed_dim=None, depths=None, num_heads=None):
    """Preset values, overridden by explicitly given ones."""
    if arch is None:
        preset = {}
    elif arch in ARCH_PRESETS:
        preset = dict(ARCH_PRESETS[arch])
    else:
        raise KeyError(f'VideoSwin: unknown arch {arch!r}; choose one of '
                       f'{sorted(ARCH_PRESETS)} or give embed_dim/depths/num_heads')
    given = dict(embed_dim=embed_dim, depths=depths, num_heads=num_heads)
    preset.update({k: v for k, v in given.items() if v is not None})
    missing = [k for k in given if k not in preset]
    if missing:
        raise ValueError(f'VideoSwin: arch=None needs {missing}')
    if len(preset['depths']) != len(preset['num_heads']):
        raise ValueError('VideoSwin: depths and num_heads must have the same length, got '
                         f"{preset['depths']} and {preset['num_heads']}")
    return preset


@MODELS.register_module()
class VideoSwin(nn.Module):
    """Video Swin backbone: x (B, 3, T, H, W) normalised frames -> (B, C, ceil(T / pt)).

    Args:
        arch: preset name ('tiny', 'small', 'base', 'large', 'demo') or None.
        embed_dim, depths, num_heads: override the preset.
        window_size, patch_size: (t, h, w); the temporal patch size is the number of frames
            per output feature step (2 for the released models).
        mlp_ratio: hidden width of the block MLPs relative to their input.
        drop_path_rate: stochastic depth of the last block (linear from 0 over blocks).
        frozen_stages: -1 freezes nothing, 0 the patch embedding, k >= 1 also the first k
            stages (each with its following patch merging); frozen parts never get gradients
            and stay in eval mode through ``.train()``.
        with_cp: activation checkpointing per block, for the trainable stages only.
        pretrained: a converted file (``tools/convert_vswin_ckpt.py``) or an official
            Video Swin / mmaction2 release file; the layout is detected automatically.
    """

    def __init__(self, arch='tiny', embed_dim=None, depths=None, num_heads=None,
                 window_size=(8, 7, 7), patch_size=(2, 4, 4), mlp_ratio=4.0,
                 drop_path_rate=0.1, dropout=0.0, attention_dropout=0.0, frozen_stages=-1,
                 with_cp=False, pretrained=None):
        super().__init__()
        spec = resolve_arch(arch, embed_dim, depths, num_heads)
        self.arch = arch
        self.embed_dim = spec['embed_dim']
        self.depths = tuple(spec['depths'])
        self.num_heads = tuple(spec['num_heads'])
        self.window_size = tuple(window_size)
        self.patch_size = tuple(patch_size)
        self.mlp_ratio = mlp_ratio
        self.num_stages = len(self.depths)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'VideoSwin: frozen_stages={frozen_stages} outside '
                             f'[-1, {self.num_stages}]')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

        # imported here: feature-based models never pay for loading torchvision
        from torchvision.models.swin_transformer import SwinTransformerBlock
        from torchvision.models.video.swin_transformer import SwinTransformer3d

        from .swin_attention import WindowAttention3d

        def block(*args, attn_layer=None, **kwargs):
            # torchvision's block with the attention computed by scaled_dot_product_attention
            return SwinTransformerBlock(*args, attn_layer=WindowAttention3d, **kwargs)

        swin = SwinTransformer3d(
            patch_size=list(self.patch_size), embed_dim=self.embed_dim,
            depths=list(self.depths), num_heads=list(self.num_heads),
            window_size=list(self.window_size), mlp_ratio=mlp_ratio, dropout=dropout,
            attention_dropout=attention_dropout, stochastic_depth_prob=drop_path_rate,
            num_classes=1, block=block)
        # Take the trunk and the final norm; the pooling + classifier head are not used.
        self.patch_embed = swin.patch_embed
        self.pos_drop = swin.pos_drop
        self.features = swin.features
        self.norm = swin.norm
        self.out_channels = swin.num_features
        self.frames_per_step = self.patch_size[0]

        if pretrained:
            self.load_pretrained(pretrained)
        self._freeze()

    # ----- structure helpers ---------------------------------------------------------------
    def arch_spec(self):
        """Everything needed to rebuild this network (saved with converted checkpoints)."""
        return dict(embed_dim=self.embed_dim, depths=list(self.depths),
                    num_heads=list(self.num_heads), window_size=list(self.window_size),
                    patch_size=list(self.patch_size), mlp_ratio=self.mlp_ratio)

    def stage_of_feature(self, idx):
        """``features`` alternates stage, merging, stage, ...; a merging belongs to the
        stage before it (as in the official code, where it is that stage's downsample)."""
        return idx // 2

    def frozen_modules(self):
        if self.frozen_stages < 0:
            return []
        mods = [self.patch_embed, self.pos_drop]
        mods += [m for i, m in enumerate(self.features)
                 if self.stage_of_feature(i) < self.frozen_stages]
        return mods

    def _freeze(self):
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze()  # frozen parts stay in eval mode (no stochastic depth, no dropout)
        return self

    def load_pretrained(self, path):
        load_vswin_weights(self, path)

    # ----- forward -------------------------------------------------------------------------
    def _run_feature(self, idx, module, x):
        trainable = self.stage_of_feature(idx) >= self.frozen_stages
        use_cp = (self.with_cp and trainable and torch.is_grad_enabled()
                  and isinstance(module, nn.Sequential))
        if not use_cp:
            return module(x)
        for block in module:
            x = checkpoint(block, x, use_reentrant=False)
        return x

    def forward(self, x):
        # x: B, 3, T, H, W
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f'VideoSwin expects (B, 3, T, H, W), got {tuple(x.shape)}')
        x = self.pos_drop(self.patch_embed(x))  # B, T', H', W', C0
        for idx, module in enumerate(self.features):
            x = self._run_feature(idx, module, x)
        x = self.norm(x)  # B, T', h, w, C
        return x.mean(dim=(2, 3)).transpose(1, 2).contiguous()  # B, C, T'

    def forward_chunks(self, x, chunk_size=32, max_batch=None):
        """Cut the time axis into ``chunk_size``-frame chunks that are processed independently
        (no attention across chunks, as in TALLFormer), batched together.

        x: (B, 3, T, H, W); a trailing partial chunk is processed on its own.
        ``max_batch`` bounds how many chunks go through the network at once.
        Returns (B, C, sum over chunks of ceil(len / pt)), i.e. (B, C, T/2) for pt=2.
        """
        if chunk_size % self.frames_per_step:
            raise ValueError(f'chunk_size {chunk_size} must be a multiple of the temporal '
                             f'patch size {self.frames_per_step}')
        b, c, t, h, w = x.shape
        n_full = t // chunk_size
        outs = []
        if n_full:
            full = x[:, :, :n_full * chunk_size].reshape(b, c, n_full, chunk_size, h, w)
            full = full.permute(0, 2, 1, 3, 4, 5).reshape(b * n_full, c, chunk_size, h, w)
            feats = self._batched(full, max_batch)  # B*n, C', S
            steps = feats.shape[-1]
            feats = feats.reshape(b, n_full, -1, steps).permute(0, 2, 1, 3)  # B, C', n, S
            outs.append(feats.reshape(b, -1, n_full * steps))
        if t % chunk_size:
            outs.append(self._batched(x[:, :, n_full * chunk_size:], max_batch))
        return torch.cat(outs, dim=-1)

    def _batched(self, clips, max_batch):
        if not max_batch or clips.shape[0] <= max_batch:
            return self(clips)
        return torch.cat([self(part) for part in clips.split(max_batch)], dim=0)
