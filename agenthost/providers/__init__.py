"""Model providers (layer 1): one interface, one module per wire format."""
