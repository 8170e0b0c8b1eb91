import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
FIXTURES = SHARED / 'fixtures'

# Keep CPU tests predictable on small machines.
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def repo_root():
    return REPO


@pytest.fixture(scope='session')
def thumos_fixture_dir():
    path = FIXTURES / 'thumos14'
    if not path.is_dir():
        pytest.skip(f'shared THUMOS14 fixtures not found at {path}')
    return path


@pytest.fixture(scope='session')
def video_fixture_dir():
    path = FIXTURES / 'videos'
    if not path.is_dir():
        pytest.skip(f'shared video fixtures not found at {path}')
    return path
