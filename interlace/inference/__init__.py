"""Inference on fitted models: Satterthwaite df and numerical derivatives."""
