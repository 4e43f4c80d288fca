"""Plain ``nn.Module`` models. Importing this package needs torch; submodules import it at top level."""
