"""Test helpers shipped with agenthost (layer 5): a scripted fake of the Anthropic Messages API."""
