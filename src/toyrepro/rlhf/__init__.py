"""rlhf experiment."""
