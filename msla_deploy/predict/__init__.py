"""`predict`: labels, colours and overlays for pictures (torch-free)."""
