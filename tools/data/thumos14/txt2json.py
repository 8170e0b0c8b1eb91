"""THUMOS14 per-class txt annotations -> ActivityNet-style JSON.

    python tools/data/thumos14/txt2json.py --anno_root data/thumos14/annotations \
        --video_root data/thumos14/videos/test --mode test --out data/thumos14/test.json

Durations are measured from the videos under --video_root (<video_id>.mp4 or frame
folders); --durations JSON ({id: seconds} or an ActivityNet JSON) fills the rest; any
video still without one is written with "duration": null and reported. "Ambiguous"
segments go to the top-level "ambiguous" key, never into the ground truth.
"""
import argparse
import warnings

from vedatad.data.thumos_txt import load_durations, measure_durations, thumos_to_activitynet
from vedatad.utils.io import atomic_write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--anno_root', '--anno-root', required=True,
                        help='folder with <Class>_<mode>.txt (or a <mode>/ sub-folder)')
    parser.add_argument('--video_root', '--video-root', default=None)
    parser.add_argument('--mode', choices=['val', 'test'], required=True)
    parser.add_argument('--durations', default=None)
    parser.add_argument('--out', default=None, help='default: <anno_root>/<mode>.json')
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # first pass only lists the video ids
        video_ids = list(thumos_to_activitynet(args.anno_root, args.mode)['database'])
    durations = load_durations(args.durations) if args.durations else {}
    if args.video_root:
        durations.update(measure_durations(args.video_root, video_ids))
    data = thumos_to_activitynet(args.anno_root, args.mode, durations)
    out = args.out or f'{args.anno_root.rstrip("/")}/{args.mode}.json'
    atomic_write_json(out, data, indent=1)
    db = data['database']
    unknown = sum(v['duration'] is None for v in db.values())
    print(f'{len(db)} videos, {sum(len(v["annotations"]) for v in db.values())} instances, '
          f'{sum(len(v) for v in data["ambiguous"].values())} ambiguous segments, '
          f'{unknown} unknown durations -> {out}')


if __name__ == '__main__':
    main()
