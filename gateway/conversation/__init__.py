"""HTTP routes of the conversation context."""
