"""Model-fitting backends."""
