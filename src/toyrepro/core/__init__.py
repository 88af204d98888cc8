"""What every experiment shares: the GPT, the LM interface, training, data, scorecard, logging."""
