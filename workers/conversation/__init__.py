"""Stream processors of the conversation context."""
