from .io import (atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text,
                 read_json)

__all__ = ['atomic_write_bytes', 'atomic_write_json', 'atomic_write_text', 'atomic_torch_save',
           'read_json']
