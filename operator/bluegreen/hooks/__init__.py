"""spec.hooks[]: Jobs and handoffs at named points of a BlueGreen upgrade (see :mod:`.runner`)."""
