"""Job kinds: one module per kind (image, video; research next), each a `JobKind`."""
