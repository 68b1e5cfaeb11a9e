"""Read models of the conversation context."""
