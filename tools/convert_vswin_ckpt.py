"""Convert an official Video Swin (or mmaction2) release checkpoint for ``VideoSwin``.

    python tools/convert_vswin_ckpt.py --src swin_base_patch244_window877_kinetics600_22k.pth \
        --dst data/pretrained/swin_b_k600_vedatad.pth

Every source key is mapped or reported; keys that do not fit the network are an error.
(``pretrained=`` also accepts the unconverted file; converting once makes loading faster
and checks the file up front.)
"""
import argparse
import sys

from vedatad.models.backbones.vswin_checkpoint import VSwinCheckpointError
from vedatad.models.backbones.vswin_convert import convert_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--src', required=True, help='official release .pth')
    parser.add_argument('--dst', required=True, help='output .pth for VideoSwin(pretrained=)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        convert_checkpoint(args.src, args.dst)
    except (VSwinCheckpointError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
