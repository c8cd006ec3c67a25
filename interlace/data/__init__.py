"""Data: input frames (narwhals), design matrices, cross-products from lazy frames."""
