"""The `gpt` experiment: a from-scratch GPT-2 learns the Python standard library's source."""
