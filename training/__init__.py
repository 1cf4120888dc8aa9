"""m2vae_training: datasets from rosbag2 recordings, training and evaluation of M²VAE models."""
