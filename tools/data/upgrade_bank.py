"""Convert a memory bank of an older format version into the current one (a new folder).

    python tools/data/upgrade_bank.py OLD_BANK NEW_BANK

The old bank is only read; NEW_BANK appears complete or not at all. Then point configs at
NEW_BANK (or move it into OLD_BANK's place).
"""
import argparse
import sys

from vedatad.membank import BankError, upgrade_bank


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('old')
    parser.add_argument('new')
    args = parser.parse_args(argv)
    try:
        bank = upgrade_bank(args.old, args.new)
    except BankError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'{args.new}: {len(bank.video_ids())} videos in bank format version '
          f'{bank.attrs["format_version"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
