"""The conversation context: app configuration, conversations and messages."""
