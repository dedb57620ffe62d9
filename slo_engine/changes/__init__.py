"""What changed: change events, and the changes before a burn's onset."""
