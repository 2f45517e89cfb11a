"""What to run: experiments, matrices and their presets."""
