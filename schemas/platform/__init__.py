"""The platform context: setup, accounts, workspaces, apps, API keys."""
