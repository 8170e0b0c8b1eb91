"""Basic 1-D building blocks of the ActionFormer encoder, neck and heads.

Tensors are channel-first: features (B, C, T), masks (B, 1, T) bool where True marks a
valid (non-padded) time step. Every block keeps padded steps at zero so that the padding
length never changes the outputs at valid steps.

Attribute names (``conv``, ``weight``, ``scale``, ``ln1``, ``mlp`` ...) are part of the
checkpoint format shared with the official ActionFormer release: do not rename them.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import global_attention, local_attention_laid_out, local_layout


class MaskedConv1D(nn.Module):
    """Conv1d whose output is zeroed at padded steps; the mask is strided along with it."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 groups=1, bias=True):
        super().__init__()
        # 'same' alignment: output step t looks at input steps centred on t * stride
        if kernel_size % 2 != 1 or padding != kernel_size // 2:
            raise ValueError(f'MaskedConv1D needs an odd kernel with padding=kernel//2, '
                             f'got kernel_size={kernel_size}, padding={padding}')
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x, mask):
        # x: B, C, T   mask: B, 1, T (bool)
        if x.shape[-1] % self.stride != 0:
            raise ValueError(f'sequence length {x.shape[-1]} is not divisible by the '
                             f'conv stride {self.stride}')
        out = self.conv(x)  # B, C', T / stride
        # a strided output step is valid when the input step it is centred on is valid
        out_mask = mask[:, :, ::self.stride]
        return out * out_mask.to(out.dtype), out_mask


class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, T) tensors."""

    def __init__(self, num_channels, eps=1e-5, affine=True):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        if affine:
            self.weight = nn.Parameter(torch.ones(1, num_channels, 1))
            self.bias = nn.Parameter(torch.zeros(1, num_channels, 1))
        else:
            self.register_parameter('weight', None)
            self.register_parameter('bias', None)

    def forward(self, x):
        # x: B, C, T -> normalise each step's C values (biased variance). Reductions over
        # dim 1 read (B, C, T) as it lies; a fused layer_norm would need a (B, T, C) copy
        # in and out, and transposed copies cost several times the normalisation itself.
        centred = x - x.mean(dim=1, keepdim=True)
        inv_std = torch.rsqrt(centred.square().mean(dim=1, keepdim=True) + self.eps)
        if torch.is_grad_enabled():
            out = centred * inv_std  # autograd keeps `centred`: no in-place update
            return out if self.weight is None else out * self.weight + self.bias
        out = centred.mul_(inv_std)
        return out if self.weight is None else out.mul_(self.weight).add_(self.bias)


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level in the regression head)."""

    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(init_value, dtype=torch.float32))

    def forward(self, x):
        return x * self.scale


def drop_path(x, drop_prob, training):
    """Stochastic depth: drop the whole residual branch of random samples."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = torch.floor(keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device))
    return x / keep_prob * keep


class AffineDropPath(nn.Module):
    """Per-channel LayerScale (initialised small) followed by stochastic depth."""

    def __init__(self, num_dim, drop_prob=0.0, init_scale_value=1e-4):
        super().__init__()
        self.scale = nn.Parameter(init_scale_value * torch.ones(1, num_dim, 1))
        self.drop_prob = drop_prob

    def forward(self, x):
        return drop_path(self.scale * x, self.drop_prob, self.training)


def sinusoid_encoding(num_positions, dim):
    """Fixed sine/cosine position table, shape (1, dim, num_positions)."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    channel = torch.arange(dim)
    # channels 2i and 2i + 1 share the frequency 1 / 10000^(2i / dim)
    freq = torch.pow(torch.tensor(10000.0, dtype=torch.float64),
                     -(2 * (channel // 2)).double() / dim)
    angle = pos * freq[None]  # T, C
    table = torch.where(channel % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().t().unsqueeze(0)


class MaskedMHCA(nn.Module):
    """Multi-head conv-attention: depthwise conv + LayerNorm before the q/k/v projections.

    window_size <= 1 gives global attention, otherwise local attention over window_size
    steps. With stride > 1 the depthwise convs also downsample, so the block outputs
    T / stride steps (output step t is aligned with input step stride * t).
    """

    def __init__(self, n_embd, n_head, window_size=-1, stride=1, attn_pdrop=0.0,
                 proj_pdrop=0.0, use_rel_pe=False):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f'embedding dim {n_embd} is not divisible by n_head {n_head}')
        if stride != 1 and stride % 2 != 0:
            raise ValueError(f'attention stride must be 1 or even, got {stride}')
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.window_overlap = window_size // 2 if window_size > 1 else 0
        self.attn_pdrop = attn_pdrop

        kernel = stride + 1 if stride > 1 else 3
        for name in ('query', 'key', 'value'):
            conv = MaskedConv1D(n_embd, n_embd, kernel, stride=stride, padding=kernel // 2,
                                groups=n_embd, bias=False)
            setattr(self, f'{name}_conv', conv)
            setattr(self, f'{name}_norm', LayerNorm(n_embd))
            setattr(self, name, nn.Conv1d(n_embd, n_embd, 1))
        self.proj = nn.Conv1d(n_embd, n_embd, 1)
        self.proj_drop = nn.Dropout(proj_pdrop)

        if use_rel_pe and self.window_overlap > 0:
            # learnable bias per head and relative offset -w//2 .. w//2 (local only)
            self.rel_pe = nn.Parameter(torch.zeros(1, 1, n_head, window_size))
            nn.init.trunc_normal_(self.rel_pe, std=(2.0 / n_embd) ** 0.5)
        else:
            self.rel_pe = None

    def _project(self, name, x, mask):
        # x: B, C, T -> B, nh, T', hs
        y, out_mask = getattr(self, f'{name}_conv')(x, mask)
        y = getattr(self, f'{name}_norm')(y)  # one step at a time: each input is freed
        y = getattr(self, name)(y)
        B, C, T = y.shape
        return y.view(B, self.n_head, self.head_dim, T).transpose(2, 3), out_mask

    def forward(self, x, mask):
        # x: B, C, T   mask: B, 1, T  ->  B, C, T / stride and its mask
        q, out_mask = self._project('query', x, mask)
        kv_mask = out_mask[:, 0, :]  # B, T'
        dropout_p = self.attn_pdrop if self.training else 0.0
        o = self.window_overlap
        if o > 0:
            # each projection is laid out for the kernel as soon as it exists, so that its
            # (B, C, T) original is freed before the next one is computed
            q = local_layout(q, o, keys=False)
            k = local_layout(self._project('key', x, mask)[0], o, keys=True)
            v = local_layout(self._project('value', x, mask)[0], o, keys=True)
            # padded steps are zeroed after the output projection below
            out = local_attention_laid_out(q, k, v, kv_mask, o, self.rel_pe, dropout_p,
                                           self.scale, zero_padded_queries=False)
        else:
            k, v = self._project('key', x, mask)[0], self._project('value', x, mask)[0]
            out = global_attention(q, k, v, kv_mask, dropout_p, self.scale)
        del q, k, v  # not needed by the output projection: free them before it runs
        B, nh, T, hs = out.shape
        out = out.transpose(2, 3).reshape(B, nh * hs, T)
        out = self.proj_drop(self.proj(out)) * out_mask.to(out.dtype)
        return out, out_mask


FEED_FORWARD_CHUNK = 2048  # steps per stretch of a long sequence's feed-forward at inference


class TransformerBlock(nn.Module):
    """Pre-LN transformer block; with stride > 1 it halves T (max-pooled skip path)."""

    def __init__(self, n_embd, n_head, stride=1, mha_win_size=-1, n_hidden=None,
                 attn_pdrop=0.0, proj_pdrop=0.0, path_pdrop=0.0, use_rel_pe=False):
        super().__init__()
        n_hidden = n_hidden or 4 * n_embd
        self.ln1 = LayerNorm(n_embd)
        self.ln2 = LayerNorm(n_embd)
        self.attn = MaskedMHCA(n_embd, n_head, window_size=mha_win_size, stride=stride,
                               attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop,
                               use_rel_pe=use_rel_pe)
        if stride > 1:
            # window of stride + 1 centred like the strided depthwise convs in attn
            self.pool_skip = nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2)
        else:
            self.pool_skip = nn.Identity()
        # indices 0 and 3 hold the weights (checkpoint keys mlp.0.* / mlp.3.*)
        self.mlp = nn.Sequential(
            nn.Conv1d(n_embd, n_hidden, 1), nn.GELU(), nn.Dropout(proj_pdrop),
            nn.Conv1d(n_hidden, n_embd, 1), nn.Dropout(proj_pdrop))
        if path_pdrop > 0.0:
            self.drop_path_attn = AffineDropPath(n_embd, drop_prob=path_pdrop)
            self.drop_path_mlp = AffineDropPath(n_embd, drop_prob=path_pdrop)
        else:
            self.drop_path_attn = nn.Identity()
            self.drop_path_mlp = nn.Identity()

    def _feed_forward(self, x):
        # x: B, C, T -> B, C, T through mlp = (conv, GELU, dropout, conv, dropout)
        if torch.is_grad_enabled() or x.shape[-1] <= FEED_FORWARD_CHUNK:
            return self._feed_forward_part(x)
        # inference on a long sequence: the (B, 4C, T) hidden activation, and the copy of it
        # in the conv library's blocked layout, exist for one stretch of T at a time
        out = x.new_empty(x.shape)
        T = x.shape[-1]
        num_parts = math.ceil(T / FEED_FORWARD_CHUNK)
        for i in range(num_parts):
            start, stop = i * T // num_parts, (i + 1) * T // num_parts
            out[..., start:stop] = self._feed_forward_part(x[..., start:stop])
        return out

    def _feed_forward_part(self, x):
        hidden = self.mlp[0](x)  # B, 4C, T: the largest activation of the encoder
        # in place when nothing needs the pre-activation for a backward pass
        hidden = F.gelu(hidden) if torch.is_grad_enabled() else torch.ops.aten.gelu_(hidden)
        return self.mlp[4](self.mlp[3](self.mlp[2](hidden)))

    def forward(self, x, mask):
        # x: B, C, T   mask: B, 1, T  ->  B, C, T / stride and its mask
        out, out_mask = self.attn(self.ln1(x), mask)
        valid = out_mask.to(out.dtype)
        out = self.pool_skip(x) * valid + self.drop_path_attn(out)
        out = out + self.drop_path_mlp(self._feed_forward(self.ln2(out)) * valid)
        return out, out_mask


class ConvBlock(nn.Module):
    """ResNet-style basic block of two masked convs; stride > 1 halves T."""

    def __init__(self, n_embd, kernel_size=3, stride=1, expansion_factor=2):
        super().__init__()
        width = n_embd * expansion_factor
        pad = kernel_size // 2
        self.conv1 = MaskedConv1D(n_embd, width, kernel_size, stride, padding=pad)
        self.conv2 = MaskedConv1D(width, n_embd, kernel_size, 1, padding=pad)
        # 1x1 strided projection on the skip path when downsampling
        self.downsample = MaskedConv1D(n_embd, n_embd, 1, stride) if stride > 1 else None
        self.act = nn.ReLU()

    def forward(self, x, mask):
        # x: B, C, T -> B, C, T / stride
        out, out_mask = self.conv1(x, mask)
        out, out_mask = self.conv2(self.act(out), out_mask)
        identity = x if self.downsample is None else self.downsample(x, mask)[0]
        return self.act(out + identity), out_mask


def prior_bias(prior_prob):
    """Logit whose sigmoid is prior_prob (focal-loss initialisation of a classifier)."""
    return -math.log((1.0 - prior_prob) / prior_prob)


__all__ = ['MaskedConv1D', 'LayerNorm', 'Scale', 'AffineDropPath', 'drop_path',
           'sinusoid_encoding', 'TransformerBlock', 'ConvBlock', 'MaskedMHCA', 'prior_bias']
