"""Read models of workflow runs: runs, their node executions, and an app's run logs."""
