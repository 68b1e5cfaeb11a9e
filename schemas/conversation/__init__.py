"""The conversation context: how an app runs (its model configuration and web site), end
users, conversations, messages and their feedback."""
