"""Linear algebra shared by both backends (the blocked PLS factor, weighted Gram, BLAS threads)."""
