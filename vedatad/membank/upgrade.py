"""Reading banks of format version 1 (one zarr chunk file per clip chunk and per step entry),
for ``MemoryBank.copy`` / ``upgrade_bank``, which write them in the current format."""
import numpy as np

from .errors import BankError


def v1_videos(path, attrs):
    """[(video, num_frames, complete, read)] of a version-1 bank; read() -> (chunk ids,
    chunks (k, rows_per_chunk, C), steps (k,)). Every chunk is copied (version 1 did not
    tell a never-written chunk from a zero one)."""
    import zarr
    if attrs.get('format_version') != 1:
        raise BankError(f'{path}: bank format version {attrs.get("format_version")} cannot be '
                        'converted (known: 1)')
    rpc, dim = int(attrs['rows_per_chunk']), int(attrs['feat_dim'])
    group = zarr.open_group(str(path), mode='r')
    out = []
    for vid in sorted(group['feats'].array_keys()):
        feats, steps = group[f'feats/{vid}'], group[f'steps/{vid}']

        def read(feats=feats, steps=steps):
            rows = feats.shape[0]
            n = -(-rows // rpc)
            data = np.zeros((n * rpc, dim), feats.dtype)
            data[:rows] = feats[:]
            return np.arange(n), data.reshape(n, rpc, dim), np.asarray(steps[:], np.int64)
        out.append((vid, int(feats.attrs['num_frames']), bool(feats.attrs.get('complete')),
                    read))
    return out


def upgrade_bank(src, dst):
    """Write the bank at ``src`` (any supported version) as a current-format bank at ``dst``."""
    from .bank import MemoryBank
    return MemoryBank.copy(src, dst)
