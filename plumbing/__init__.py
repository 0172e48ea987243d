"""plumbing: what every fairgen package shares, and nothing of ours underneath it.

files       received files read safely (strict JSON, checked safetensors, paths kept inside a
            folder, printable strings), content hashes, and one card reader
outputs     outputs written whole by one writer (locks, staged folders, atomic replacements)
validation  input checks and their messages (integers, numbers, latents, labels, images, ...)
tables      contingency tables and Cramér's V (plain and bias-corrected)

It imports numpy, torch and safetensors only; ``tests/test_layout.py`` keeps it that way.
"""
