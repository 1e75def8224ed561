"""Expert dataset generation and zarr storage."""
