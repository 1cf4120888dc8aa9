"""m2vae_ros: multi-modal VAE (M²VAE) sensor fusion that survives dead sensors."""

__version__ = "0.1.0"
