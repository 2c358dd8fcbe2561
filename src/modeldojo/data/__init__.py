"""Data: readers with precise errors, quality checks, splits and class balance."""
