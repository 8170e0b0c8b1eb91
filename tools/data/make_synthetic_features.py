"""Write the synthetic feature dataset (annotations JSON + one .npy per video).

Example: python tools/data/make_synthetic_features.py data/synthetic_features --seed 0
"""
import argparse
from dataclasses import fields

from vedatad.data.synthetic_features import SyntheticFeatureSpec, generate_synthetic_features


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', nargs='?', default='data/synthetic_features')
    parser.add_argument('--overwrite', action='store_true',
                        help='regenerate even if a complete dataset with this spec exists')
    for field in fields(SyntheticFeatureSpec):
        parser.add_argument('--' + field.name.replace('_', '-'), type=type(field.default),
                            default=field.default)
    return parser.parse_args()


def main():
    args = parse_args()
    names = [f.name for f in fields(SyntheticFeatureSpec)]
    spec = SyntheticFeatureSpec(**{name: getattr(args, name) for name in names})
    path = generate_synthetic_features(args.out_dir, spec, overwrite=args.overwrite)
    print(f'synthetic features: {spec.num_train} training + {spec.num_val} validation videos, '
          f'annotations in {path}')


if __name__ == '__main__':
    main()
