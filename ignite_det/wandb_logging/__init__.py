"""Weights & Biases logging for an evaluator: the report, the sample images, and how to attach them."""
