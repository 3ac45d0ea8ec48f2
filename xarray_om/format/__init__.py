"""The OM container: bytes and trees. Knows nothing of xarray, dask or zarr."""
