"""probing experiment."""
