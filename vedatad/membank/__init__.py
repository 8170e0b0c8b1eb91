"""On-disk memory bank of backbone features (zarr v3) and the feature extractor filling it."""
from .bank import BankError, BankReadOnlyError, MemoryBank

__all__ = ['MemoryBank', 'BankError', 'BankReadOnlyError']
