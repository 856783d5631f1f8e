"""CPU kernels (compiled on first use, with pure-torch twins): weight-only int8 / int4 / bf16 matrix products."""
