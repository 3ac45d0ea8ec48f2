"""xarray-om: Open-Meteo OM files for xarray, dask and zarr."""

from .errors import OmCodecError, OmEncodingError, OmError, OmFormatError, OmReadOnlyError

__all__ = ["OmCodecError", "OmEncodingError", "OmError", "OmFormatError", "OmReadOnlyError"]
__version__ = "0.1.0"
