"""Convert an ActionFormer release YAML config into a vedatad Python config.

    python tools/convert_actionformer_config.py OFFICIAL.yaml OUT.py

The release's defaults are merged in as its own loader does; dataset paths are kept
(relative paths stay relative to the working directory, as in the release).
"""
import argparse

from vedatad.engine.official_config import convert_yaml_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('yaml', help='release config, e.g. configs/thumos_i3d.yaml')
    parser.add_argument('out', help='vedatad config to write (.py)')
    args = parser.parse_args()
    entries = convert_yaml_file(args.yaml, args.out)
    print(f'wrote {args.out}: {entries["model"]["type"]} on '
          f'{entries["train_dataset"]["type"]}, work_dir {entries["work_dir"]}')


if __name__ == '__main__':
    main()
