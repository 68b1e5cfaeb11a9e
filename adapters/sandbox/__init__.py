"""The code sandbox: runs a workflow code node's program in a cage of its own
(`base.CodeSandbox`; the implementation is `bubblewrap.BubblewrapSandbox`)."""
