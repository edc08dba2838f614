"""Training: the leaf learns to land on its teacher's vectors (warm start, batches, the loop, distill)."""
