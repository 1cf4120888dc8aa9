"""ament_python package m2vae_ros: the library + node (m2vae_ros) and training (m2vae_training)."""

from glob import glob

from setuptools import setup

PACKAGE = "m2vae_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[
        "m2vae_ros",
        "m2vae_ros.codec",
        "m2vae_ros.sim",
        "m2vae_training",
    ],
    # The training code lives in training/ but is installed as m2vae_training, never as
    # a top-level module called `training`.
    package_dir={"m2vae_training": "training"},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "torch>=2.1",
        "opencv-python-headless>=4.8",
        "rosbags>=0.10",
        # Imported by bag_errors.py and bag_salvage.py (reading damaged bags) as well as by rosbags.
        "apsw>=3.40",
        "backports.zstd>=1.0; python_version < '3.14'",
        "safetensors>=0.4",
        "PyYAML>=6",
        "tqdm>=4.60",
        "tensorboard>=2.12",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
    ],
    extras_require={"test": ["pytest>=7", "ruff>=0.5"]},
    zip_safe=True,
    maintainer="m2vae_ros developers",
    maintainer_email="m2vae-ros@example.org",
    description="Multi-modal VAE (M²VAE) camera/LiDAR fusion that keeps working when sensors die.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "m2vae-sim = m2vae_ros.sim.cli:main",
            "m2vae-dataset = m2vae_training.entry_points:dataset",
            "m2vae-train = m2vae_training.entry_points:train",
            "m2vae-eval = m2vae_training.entry_points:evaluate",
            "m2vae-fusion = m2vae_ros.fusion_node:main",
            "m2vae-play = m2vae_ros.play:main",
            # `ros2 run m2vae_ros <name>` looks for these names.
            "fusion_node = m2vae_ros.fusion_node:main",
            "train = m2vae_training.entry_points:train",
            "play = m2vae_ros.play:main",
        ],
    },
)
