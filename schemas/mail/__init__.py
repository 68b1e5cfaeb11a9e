"""The mail context: mail other contexts ask for, sent once by the mail processor."""
