"""One config loader: --cfg-options keep spaces, follow mmengine's value syntax otherwise, and
refuse keys the config cannot hold; config files under paths with spaces load."""
import argparse

import pytest
from mmengine.config import DictAction

from vedatad.engine.config_loader import (CfgOptionError, add_cfg_options, load_config,
                                          option_key_problems, parse_options, parse_value)
from vedatad.engine.config_paths import TOP_LEVEL_KEYS
from vedatad.utils.config_keys import ConfigKeyError


@pytest.mark.parametrize('text, value', [
    ('5', 5), ('-3', -3), ('1e-4', 1e-4), ('0.5', 0.5), ('True', True), ('false', False),
    ('None', None), ('none', 'none'), ('[1, 2]', [1, 2]), ('(a,b)', ('a', 'b')),
    ('a,b', ['a', 'b']), ('[(1,2),[a, b], c]', [(1, 2), ['a', 'b'], 'c']), ('[]', []),
    ('()', ()), ("'a,b'", 'a,b'), ('"5"', '5'), ('/data/my runs/x', '/data/my runs/x'),
    ('[/a b/c, d e]', ['/a b/c', 'd e']), ('x=y', 'x=y'),
])
def test_values(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_spaces_are_kept_where_mmengine_deletes_them():
    parser = argparse.ArgumentParser()
    add_cfg_options(parser)
    ours = parser.parse_args(['--cfg-options', 'work_dir=/tmp/my runs/a b', 'train_cfg.epochs=3'])
    assert ours.cfg_options == {'work_dir': '/tmp/my runs/a b', 'train_cfg.epochs': 3}
    theirs = argparse.ArgumentParser()
    theirs.add_argument('--cfg-options', nargs='+', action=DictAction)
    assert theirs.parse_args(['--cfg-options', 'work_dir=/tmp/my runs/a b']).cfg_options == \
        {'work_dir': '/tmp/myruns/ab'}  # the behaviour this loader replaces


def test_malformed_options():
    with pytest.raises(CfgOptionError, match='KEY=VALUE'):
        parse_options(['epochs'])
    with pytest.raises(CfgOptionError, match='unbalanced'):
        parse_value('[1, 2')
    parser = argparse.ArgumentParser()
    add_cfg_options(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(['--cfg-options', '=3'])


@pytest.fixture
def config_file(tmp_path):
    folder = tmp_path / 'my configs'
    folder.mkdir()
    (folder / 'base.py').write_text("_root = 'data/x y'\n"
                                    "model = dict(type='ActionFormer', n_mha_win_size=[7, 7])\n")
    (folder / 'exp.py').write_text(
        "_base_ = ['./base.py']\n"
        "train_dataset = dict(type='VideoDataset', ann_file=_base_._root + '/a.json',\n"
        "                     data_prefix='v', window_size=64)\n"
        "train_cfg = dict(epochs=3)\nwork_dir = None\n")
    return folder / 'exp.py'


def test_load_config_with_spaces_and_overrides(config_file):
    cfg = load_config(config_file, {'work_dir': '/tmp/out dir', 'train_cfg.epochs': 5,
                                    'train_dataset.fps': 15, 'model.n_mha_win_size': [7, 9],
                                    'model.input_noise': 0.1, '_root': 'z'},
                      TOP_LEVEL_KEYS)
    assert cfg.work_dir == '/tmp/out dir' and cfg.train_cfg.epochs == 5
    assert cfg.train_dataset.ann_file == 'data/x y/a.json'
    assert cfg.train_dataset.fps == 15   # a VideoDataset argument not in the file
    assert cfg.model.n_mha_win_size == [7, 9] and cfg.model.input_noise == 0.1


def test_unknown_option_keys_are_all_named_with_suggestions(config_file):
    with pytest.raises(ConfigKeyError) as err:
        load_config(config_file, {'train_cfg.epochz': 5, 'train_dataset.fpz': 15,
                                  'modle.x': 1, 'work_dri': 'a', 'model.n_mha_win_size.5': 3,
                                  'model.n_mha_win_size.0': 3, 'work_dir.x': 1}, TOP_LEVEL_KEYS)
    text = str(err.value)
    assert "'train_cfg.epochz'; did you mean 'train_cfg.epochs'?" in text
    assert "'train_dataset.fpz'; did you mean 'train_dataset.fps'?" in text
    assert "'modle'; did you mean 'model'?" in text
    assert "'work_dri'; did you mean 'work_dir'?" in text
    assert "'model.n_mha_win_size.5' is not an index of the 2-element list" in text
    assert "model.n_mha_win_size.0: set the whole list instead (model.n_mha_win_size=[...])" \
        in text
    assert "'work_dir' is not a section" in text


def test_sections_of_unknown_shape_accept_new_keys(config_file):
    cfg = load_config(config_file)
    cfg.merge_from_dict({'extract': {'chunk_size': 32}})
    assert option_key_problems(cfg, {'extract.num_workers': 2}) == []
    assert option_key_problems(cfg, {'new_section.x': 1})  # not a key of this config


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='config file not found: .*nope.py'):
        load_config(tmp_path / 'nope.py')


def test_a_missing_base_file_is_named_with_the_config(tmp_path):
    cfg = tmp_path / 'copied cfg.py'
    cfg.write_text("_base_ = ['../_base_/models/tallformer.py']\nwork_dir = 'x'\n")
    with pytest.raises(FileNotFoundError) as err:
        load_config(cfg)
    message = str(err.value)
    assert message.startswith(f'{cfg}: a file it inherits from (_base_) is not found')
    assert 'tallformer.py' in message
