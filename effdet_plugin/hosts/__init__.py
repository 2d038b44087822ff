"""Host adapters: each owns one host's seams (``rebind``) and knows its ``Conv``, scaling rule and head modules."""
