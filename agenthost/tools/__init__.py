"""Built-in tools (layer 2) and the registry that turns an agent's tool config into model tools."""
