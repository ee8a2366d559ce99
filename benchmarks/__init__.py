"""Side-by-side benchmarks; each script writes its results to docs/."""
