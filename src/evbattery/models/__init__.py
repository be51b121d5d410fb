"""Networks and checkpoint I/O."""
