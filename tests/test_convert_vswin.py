"""Official Video Swin checkpoint conversion: key mapping, numerical equivalence, errors."""
import importlib.util

import pytest
import torch

from vedatad.models.backbones.video_swin import VideoSwin
from vedatad.models.backbones.vswin_checkpoint import (VSwinCheckpointError,
                                                       vedatad_key_to_official)
from vedatad.models.backbones.vswin_convert import convert_checkpoint

torch.set_num_threads(1)

SPEC = dict(embed_dim=8, depths=(2, 1), num_heads=(1, 2), window_size=(2, 4, 4))

# Official Video Swin key names, written out from the official code's module tree
# (PatchEmbed3D, BasicLayer.blocks[SwinTransformerBlock3D], PatchMerging, final norm).
OFFICIAL_PATCH_EMBED = ['patch_embed.proj.weight', 'patch_embed.proj.bias',
                        'patch_embed.norm.weight', 'patch_embed.norm.bias']
OFFICIAL_BLOCK = ['norm1.weight', 'norm1.bias', 'attn.relative_position_bias_table',
                  'attn.relative_position_index', 'attn.qkv.weight', 'attn.qkv.bias',
                  'attn.proj.weight', 'attn.proj.bias', 'norm2.weight', 'norm2.bias',
                  'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias']
OFFICIAL_DOWNSAMPLE = ['downsample.reduction.weight', 'downsample.norm.weight',
                       'downsample.norm.bias']


def official_keys(depths, last_norm='norm'):
    keys = list(OFFICIAL_PATCH_EMBED)
    for i, depth in enumerate(depths):
        keys += [f'layers.{i}.blocks.{j}.{k}' for j in range(depth) for k in OFFICIAL_BLOCK]
        if i < len(depths) - 1:
            keys += [f'layers.{i}.{k}' for k in OFFICIAL_DOWNSAMPLE]
    return keys + [f'{last_norm}.weight', f'{last_norm}.bias']


def make_official(model, layout='official', head=True):
    """An official-layout release file holding ``model``'s weights."""
    n = len(model.depths)
    sd = {f'backbone.{vedatad_key_to_official(k, n, layout)}': v.clone()
          for k, v in model.state_dict().items()}
    if head:
        sd['cls_head.fc_cls.weight'] = torch.randn(5, model.out_channels)
        sd['cls_head.fc_cls.bias'] = torch.zeros(5)
    return {'meta': {'epoch': 30}, 'state_dict': sd}


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    m = VideoSwin(arch=None, drop_path_rate=0.0, **SPEC).eval()
    with torch.no_grad():  # non-trivial norms so a swapped key would show in the output
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def test_inverse_mapping_produces_exactly_the_official_keys(model):
    ckpt = make_official(model, head=False)
    keys = {k[len('backbone.'):] for k in ckpt['state_dict']}
    assert keys == set(official_keys(SPEC['depths']))
    mm = make_official(model, layout='mmaction2', head=False)
    assert {k[len('backbone.'):] for k in mm['state_dict']} == \
        set(official_keys(SPEC['depths'], last_norm='norm1'))


@pytest.mark.parametrize('layout', ['official', 'mmaction2'])
def test_convert_and_load_reproduces_outputs(tmp_path, model, layout):
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(make_official(model, layout), src)
    lines = []
    report = convert_checkpoint(src, dst, log=lines.append)
    assert {k for k, _ in report['dropped']} == {'cls_head.fc_cls.weight',
                                                 'cls_head.fc_cls.bias'}
    assert any('cls_head.fc_cls.weight' in line for line in lines)
    converted = torch.load(dst, weights_only=False)
    assert converted['meta']['arch']['depths'] == list(SPEC['depths'])
    assert converted['meta']['arch']['window_size'] == list(SPEC['window_size'])
    x = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
        for path in (dst, src):  # converted file, and the official file directly
            fresh = VideoSwin(arch=None, drop_path_rate=0.0, pretrained=str(path), **SPEC)
            torch.testing.assert_close(fresh.eval()(x), ref, rtol=0, atol=0)
    assert not torch.allclose(VideoSwin(arch=None, **SPEC).eval()(x), ref)


def test_attn_mask_buffers_are_dropped(tmp_path, model):
    ckpt = make_official(model)
    ckpt['state_dict']['backbone.layers.0.blocks.1.attn_mask'] = torch.zeros(4, 32, 32)
    torch.save(ckpt, tmp_path / 'src.pth')
    report = convert_checkpoint(tmp_path / 'src.pth', tmp_path / 'dst.pth', log=lambda s: None)
    assert 'backbone.layers.0.blocks.1.attn_mask' in dict(report['dropped'])


def test_missing_key_is_an_error_listing_it(tmp_path, model):
    ckpt = make_official(model)
    del ckpt['state_dict']['backbone.layers.1.blocks.0.mlp.fc2.weight']
    torch.save(ckpt, tmp_path / 'src.pth')
    with pytest.raises(VSwinCheckpointError, match=r'missing keys.*features\.2\.0\.mlp\.3'):
        VideoSwin(arch=None, pretrained=str(tmp_path / 'src.pth'), **SPEC)


def test_unknown_backbone_key_is_an_error(tmp_path, model):
    ckpt = make_official(model)
    ckpt['state_dict']['backbone.layers.0.blocks.0.gamma'] = torch.ones(8)
    torch.save(ckpt, tmp_path / 'src.pth')
    with pytest.raises(VSwinCheckpointError, match='gamma'):
        convert_checkpoint(tmp_path / 'src.pth', tmp_path / 'dst.pth', log=lambda s: None)
    ckpt = make_official(model)
    ckpt['state_dict']['backbone.head.weight'] = torch.ones(8)
    torch.save(ckpt, tmp_path / 'src2.pth')
    with pytest.raises(VSwinCheckpointError, match='backbone.head.weight'):
        VideoSwin(arch=None, pretrained=str(tmp_path / 'src2.pth'), **SPEC)


def test_wrong_architecture_and_wrong_files(tmp_path, model):
    torch.save(make_official(model), tmp_path / 'small.pth')
    # the file has 2 stages; a 4-stage network must refuse it, naming the file
    with pytest.raises(VSwinCheckpointError, match='small.pth.*missing keys'):
        VideoSwin(arch='demo', pretrained=str(tmp_path / 'small.pth'))
    # other window size -> different relative position tables
    with pytest.raises(VSwinCheckpointError):
        VideoSwin(arch=None, window_size=(2, 2, 2), pretrained=str(tmp_path / 'small.pth'),
                  **{k: v for k, v in SPEC.items() if k != 'window_size'})
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, tmp_path / 'resnet.pth')
    with pytest.raises(VSwinCheckpointError, match='not a Video Swin checkpoint'):
        VideoSwin(arch=None, pretrained=str(tmp_path / 'resnet.pth'), **SPEC)
    (tmp_path / 'garbage.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(VSwinCheckpointError, match='garbage.pth'):
        VideoSwin(arch=None, pretrained=str(tmp_path / 'garbage.pth'), **SPEC)


def _tool(repo_root):
    spec = importlib.util.spec_from_file_location('convert_vswin_ckpt',
                                                  repo_root / 'tools/convert_vswin_ckpt.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_cli(tmp_path, model, repo_root, capsys):
    tool = _tool(repo_root)
    torch.save(make_official(model), tmp_path / 'src.pth')
    assert tool.main(['--src', str(tmp_path / 'src.pth'), '--dst', str(tmp_path / 'o.pth')]) == 0
    assert 'dropped cls_head.fc_cls.weight' in capsys.readouterr().out
    assert (tmp_path / 'o.pth').is_file()
    torch.save({'state_dict': {'x': torch.zeros(1)}}, tmp_path / 'bad.pth')
    assert tool.main(['--src', str(tmp_path / 'bad.pth'), '--dst', str(tmp_path / 'b.pth')]) == 1
    assert 'bad.pth' in capsys.readouterr().err
    assert not (tmp_path / 'b.pth').exists()


class _Payload:
    """An arbitrary object: loading it would mean running unpickling code."""


def test_release_metadata_with_numpy_scalars_loads_but_objects_are_refused(tmp_path, model):
    import numpy as np
    ckpt = make_official(model)
    ckpt['meta'].update(hook_msgs={'best_score': np.float64(0.7)}, dtype=np.dtype('float32'))
    torch.save(ckpt, tmp_path / 'mmcv_meta.pth')
    VideoSwin(arch=None, pretrained=str(tmp_path / 'mmcv_meta.pth'), **SPEC)
    ckpt = make_official(model)
    ckpt['meta']['payload'] = _Payload()
    torch.save(ckpt, tmp_path / 'object.pth')
    with pytest.raises(VSwinCheckpointError, match='object.pth.*Python objects other than tensors and plain values'):
        VideoSwin(arch=None, pretrained=str(tmp_path / 'object.pth'), **SPEC)


def test_backbone_modules_import_each_other_one_way(repo_root):
    """video_swin -> vswin_checkpoint and vswin_convert -> both; no cycle, also not through
    imports inside functions."""
    import ast
    folder = repo_root / 'vedatad' / 'models' / 'backbones'
    graph = {}
    for path in folder.glob('*.py'):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets.add(node.module or '')
        graph[path.stem] = targets & {p.stem for p in folder.glob('*.py')}
    assert graph['vswin_checkpoint'] == set()
    assert 'vswin_checkpoint' in graph['video_swin']

    def reaches(start, goal, seen=()):
        return any(t == goal or (t not in seen and reaches(t, goal, seen + (t,)))
                   for t in graph.get(start, ()))
    assert not any(reaches(m, m) for m in graph), graph
