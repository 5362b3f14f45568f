"""Coverage-guided fuzzing of every decoder of mipd.core with atheris (see docs/robustness.md)."""
