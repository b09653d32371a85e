"""The impure half of the launch path: layer order, template discovery, this machine's facts, resolve, execute."""
