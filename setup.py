"""vedatad: temporal action detection toolbox (ActionFormer + TALLFormer)."""
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name):
    lines = Path(__file__).parent.joinpath('requirements', name).read_text().splitlines()
    return [l.split('#')[0].strip() for l in lines
            if l.split('#')[0].strip() and not l.startswith('-r')]


def read_version():
    scope = {}
    exec(Path(__file__).parent.joinpath('vedatad', 'version.py').read_text(), scope)
    return scope['__version__']


setup(
    name='vedatad',
    version=read_version(),
    description='Temporal action detection: ActionFormer on features, TALLFormer end to end',
    long_description=Path(__file__).parent.joinpath('README.md').read_text(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['vedatad', 'vedatad.*']),
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
)
