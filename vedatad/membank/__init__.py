"""On-disk memory bank of backbone features (zarr v3): storage only.

Nothing here imports the data, model or engine layers (a test checks the import graph).
"""
from .bank import FORMAT_VERSION, MemoryBank
from .errors import (BankCorruptError, BankError, BankFullError, BankLockedError,
                     BankReadOnlyError)
from .lock import BankLock
from .settings import SETTING_KEYS, backbone_signature, settings_differences
from .upgrade import upgrade_bank

__all__ = ['MemoryBank', 'BankError', 'BankReadOnlyError', 'BankFullError', 'BankCorruptError',
           'BankLockedError', 'BankLock', 'FORMAT_VERSION', 'SETTING_KEYS',
           'backbone_signature', 'settings_differences', 'upgrade_bank']
